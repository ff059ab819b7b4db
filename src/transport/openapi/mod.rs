//! `GET /openapi.json`: an OpenAPI 3.1 description of the REST API, generated once at start from
//! the same descriptors and route table that route REST calls, so it cannot drift from them.

mod comments;
mod operation;
mod schema;
#[cfg(test)]
mod tests;

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use prost_reflect::DescriptorPool;
use serde_json::{Map, Value as Json, json};
use tonic::{Code, body::Body};
use tower::{Layer, Service};

use super::{
    Next, PassOr, Protocol, answer, pass, refuse,
    routes::{RouteError, Routes},
};

/// Where the document is served, on the main port.
pub const PATH: &str = "/openapi.json";

/// The component every error response's body refers to.
const STATUS: &str = "google.rpc.Status";

/// The layer answering `GET` and `HEAD` on [`PATH`] with the document, without authentication
/// (it describes the API, it holds nothing); every other path goes on. Refuses to build when a
/// REST route would take the same path.
pub fn layer(routes: &Routes) -> anyhow::Result<OpenApiLayer> {
    match routes.find(&Method::GET, PATH) {
        Err(RouteError::NotFound) => {}
        Ok(matched) => anyhow::bail!("the REST route of {} takes {PATH}", matched.route.method.full_name()),
        Err(_) => anyhow::bail!("a REST route takes {PATH}"),
    }
    let body = Bytes::from(serde_json::to_vec(&document(crate::proto::pool(), routes)?)?);
    Ok(OpenApiLayer { body })
}

/// See [`layer`]; holds the document, rendered once.
#[derive(Debug, Clone)]
pub struct OpenApiLayer {
    body: Bytes,
}

impl<S> Layer<S> for OpenApiLayer {
    type Service = OpenApi<S>;

    fn layer(&self, inner: S) -> OpenApi<S> {
        OpenApi { inner, body: self.body.clone() }
    }
}

/// Answers [`PATH`]; hands every other request on.
#[derive(Debug, Clone)]
pub struct OpenApi<S> {
    inner: S,
    body: Bytes,
}

impl<S: Next> Service<Request<Body>> for OpenApi<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = PassOr<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if request.uri().path() != PATH {
            return pass(self.inner.call(request));
        }
        if request.method() == Method::GET || request.method() == Method::HEAD {
            let mut response = refuse::bytes_response(StatusCode::OK, "application/json", self.body.clone());
            response.extensions_mut().insert(Code::Ok);
            return answer(std::future::ready(response));
        }
        let status = refuse::status(
            Code::Unimplemented,
            "REQUEST-MethodNotAllowed",
            &format!("{} is not allowed on {PATH}; allowed: GET, HEAD", request.method()),
        );
        let mut response = refuse::render(Protocol::Rest, &status, Some(StatusCode::METHOD_NOT_ALLOWED));
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        answer(refuse::early(request, response))
    }
}

/// The document: every route of every service with `google.api.http` rules in `pool`.
pub fn document(pool: &DescriptorPool, routes: &Routes) -> anyhow::Result<Json> {
    let mut schemas = schema::Schemas::default();
    let mut paths = Map::new();
    let mut services = Vec::new();
    let mut bindings = std::collections::HashMap::<String, usize>::new();
    for route in routes.iter() {
        let service = route.method.parent_service();
        if !services.iter().any(|s: &prost_reflect::ServiceDescriptor| s.full_name() == service.full_name()) {
            services.push(service.clone());
        }
        let binding = bindings.entry(route.method.full_name().to_owned()).or_default();
        let (path, operation) = operation::of(route, *binding, &mut schemas)?;
        *binding += 1;
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[route.http_method.as_str().to_ascii_lowercase()] = operation;
    }
    let status =
        pool.get_message_by_name(STATUS).ok_or_else(|| anyhow::anyhow!("{STATUS} is not in the descriptors"))?;
    schemas.message(&status);
    let mut components = schemas.finish();
    // Every error answer carries both, whatever its code (a message may be empty, never absent).
    components[STATUS]["required"] = json!(["code", "message"]);
    components[STATUS]["description"] = json!(
        "Every error answer. `code` is the gRPC status code, `message` says what was wrong, and \
         `details` holds a `zitadel.v1.ErrorDetail` (`{\"@type\": \"type.googleapis.com/zitadel.v1.ErrorDetail\", \
         \"id\": \"...\", \"message\": \"...\"}`) whose `id` names the error, or a \
         `zitadel.v1.CredentialsCheckError` after a failed check."
    );
    let tags: Vec<Json> = services
        .iter()
        .map(|s| {
            let mut tag = json!({ "name": s.full_name() });
            if let Some(text) = comments::of_service(s) {
                tag["description"] = Json::String(text);
            }
            tag
        })
        .collect();
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sessiond REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "ZITADEL's Session API v2 (and the services beside it) as REST/JSON.",
            "description": DESCRIPTION,
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "tags": tags,
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": error_responses(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <token>`: a sessiond API token (`sessiond token add`)."
                }
            }
        }
    }))
}

const DESCRIPTION: &str = "Generated from the descriptors and `google.api.http` rules that route REST calls. \
Bodies and answers are proto3 JSON: lowerCamelCase names (the proto names are accepted on input too), \
64-bit integers as strings (numbers accepted on input), enums by name (numbers accepted on input), \
`Timestamp` as RFC 3339, `Duration` as `\"<seconds>s\"`, `bytes` as base64. Unknown fields are refused. \
Answers omit fields that hold their default value. The same RPCs are served over gRPC, gRPC-Web and \
Connect on the same port.";

/// The error answers every operation refers to.
fn error_responses() -> Json {
    let status = json!({ "application/json": { "schema": { "$ref": format!("#/components/schemas/{STATUS}") } } });
    json!({
        "Error": {
            "description": "A `google.rpc.Status`; the HTTP status follows the gRPC code.",
            "content": status
        },
        "Unimplemented": {
            "description": "The request names a feature this server does not implement, such as a check or \
                            challenge it has not built (gRPC code 12, `CHECK-Unimplemented`, `CHALLENGE-Unimplemented`).",
            "content": status
        },
        "Unauthenticated": {
            "description": "No usable bearer token (gRPC code 16).",
            "headers": {
                "WWW-Authenticate": { "schema": { "type": "string", "const": "Bearer" } }
            },
            "content": status
        }
    })
}
