//! One REST route as an OpenAPI operation: its path and query parameters, body and answers,
//! described as `transport::json` reads and writes them.

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Value as Json, json};

use super::{comments, schema::Schemas};
use crate::transport::{json::is_scalar_like, routes::Route};

/// How deep query parameter names go into nested messages (a recursive message would not end).
const MAX_QUERY_DEPTH: usize = 6;

/// The route's OpenAPI path and its operation; `binding` counts the RPC's earlier routes
/// (`additional_bindings`), which keeps operation ids unique.
pub(super) fn of(route: &Route, binding: usize, schemas: &mut Schemas) -> anyhow::Result<(String, Json)> {
    let method = &route.method;
    let input = method.input();
    let (path, placeholders) = route.openapi_path();
    let mut parameters = Vec::new();
    for placeholder in placeholders {
        let field = match placeholder.field_path {
            Some(field_path) => Some(field_at(&input, field_path).ok_or_else(|| {
                anyhow::anyhow!("{}: the path variable `{field_path}` names no field", method.full_name())
            })?),
            None => None,
        };
        let mut schema = match (&field, &placeholder.pattern) {
            (Some(field), None) => schemas.kind(&field.kind()),
            _ => json!({ "type": "string" }),
        };
        if schema["type"] == "string" {
            // A path segment is never empty.
            schema["minLength"] = json!(1);
        }
        let mut notes: Vec<String> = field.as_ref().and_then(comments::of_field).into_iter().collect();
        match (placeholder.field_path, &placeholder.pattern) {
            (Some(field_path), Some(pattern)) => notes.push(format!(
                "Part of `{field_path}`, which is set to the segments matching `{pattern}`, literals included."
            )),
            (None, _) => notes.push("Any segment; the server ignores its value.".into()),
            _ => {}
        }
        if placeholder.many {
            notes.push("Matches one or more segments (`**`).".into());
        }
        let mut parameter = json!({ "name": placeholder.name, "in": "path", "required": true, "schema": schema });
        if !notes.is_empty() {
            parameter["description"] = Json::String(notes.join("\n\n"));
        }
        parameters.push(parameter);
    }
    // A rule whose body takes every field takes no query parameters; otherwise every field that
    // neither the path nor the body binds may be one.
    if route.body != "*" {
        let bound: Vec<&str> = route.path_fields().chain(std::iter::once(route.body.as_str())).collect();
        let mut visiting = vec![input.full_name().to_owned()];
        query_parameters(&input, &bound, &mut Vec::new(), &mut visiting, schemas, &mut parameters);
    }
    let mut operation = json!({
        "operationId": match binding {
            0 => method.full_name().to_owned(),
            n => format!("{}_{n}", method.full_name()),
        },
        "summary": method.name(),
        "tags": [method.parent_service().full_name()],
    });
    if let Some(text) = comments::of_method(method) {
        operation["description"] = Json::String(text);
    }
    if !parameters.is_empty() {
        operation["parameters"] = Json::Array(parameters);
    }
    let body_schema = match route.body.as_str() {
        "" => None,
        "*" => Some(schemas.message(&input)),
        field => {
            let field = input.get_field_by_name(field).ok_or_else(|| {
                anyhow::anyhow!("{}: the rule's body names the unknown field `{field}`", method.full_name())
            })?;
            Some(schemas.field(&field))
        }
    };
    if let Some(schema) = body_schema {
        // An empty body is the empty message (or no value for a body field).
        operation["requestBody"] = json!({
            "required": false,
            "content": { "application/json": { "schema": schema } }
        });
        if route.path_fields().next().is_some() {
            operation["requestBody"]["description"] = json!("Path parameters win over the same fields given here.");
        }
    }
    let success = json!({
        "description": format!("{} answered.", method.name()),
        "content": { "application/json": { "schema": answer_schema(route, schemas) } }
    });
    operation["responses"] = json!({
        route.success_code.to_string(): success,
        "400": { "$ref": "#/components/responses/Error" },
        "401": { "$ref": "#/components/responses/Unauthenticated" },
        "403": { "$ref": "#/components/responses/Error" },
        "404": { "$ref": "#/components/responses/Error" },
        "4XX": { "$ref": "#/components/responses/Error" },
        "501": { "$ref": "#/components/responses/Unimplemented" },
        "5XX": { "$ref": "#/components/responses/Error" }
    });
    Ok((path, operation))
}

/// The answer's schema as `json::response_json` renders it: the message, or only the field
/// `response_body` names when that field holds a single message.
fn answer_schema(route: &Route, schemas: &mut Schemas) -> Json {
    let output = route.method.output();
    let field = match route.response_body.as_str() {
        "" | "*" => None,
        name => output.get_field_by_name(name),
    };
    match field.map(|f| (f.kind(), f.is_list() || f.is_map())) {
        Some((Kind::Message(inner), false)) => schemas.message(&inner),
        _ => schemas.message(&output),
    }
}

/// The field at a dotted proto path (as path variables name them).
fn field_at(message: &MessageDescriptor, path: &str) -> Option<FieldDescriptor> {
    let mut desc = message.clone();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let field = desc.get_field_by_name(part)?;
        if parts.peek().is_none() {
            return Some(field);
        }
        let Kind::Message(next) = field.kind() else { return None };
        desc = next;
    }
    None
}

/// The query parameters `json::add_query` accepts: dotted JSON names through singular nested
/// messages down to a scalar, an enum, a well-known type written as a scalar, or a repeated one
/// of these (given once per value); never a map, never into a field the path or body binds.
fn query_parameters(
    message: &MessageDescriptor,
    bound: &[&str],
    prefix: &mut Vec<FieldDescriptor>,
    visiting: &mut Vec<String>,
    schemas: &mut Schemas,
    out: &mut Vec<Json>,
) {
    for field in message.fields() {
        prefix.push(field.clone());
        let proto_path = prefix.iter().map(|f| f.name()).collect::<Vec<_>>().join(".");
        let is_bound =
            bound.iter().any(|b| !b.is_empty() && (proto_path == *b || proto_path.starts_with(&format!("{b}."))));
        let leaf = match field.kind() {
            _ if is_bound || field.is_map() => false,
            Kind::Message(m) if is_scalar_like(&m) => true,
            // The well-known types' JSON forms have no fields to name.
            Kind::Message(m) if m.full_name().starts_with("google.protobuf.") || field.is_list() => false,
            Kind::Message(m) => {
                if prefix.len() < MAX_QUERY_DEPTH && !visiting.iter().any(|v| v == m.full_name()) {
                    visiting.push(m.full_name().to_owned());
                    query_parameters(&m, bound, prefix, visiting, schemas, out);
                    visiting.pop();
                }
                false
            }
            _ => true,
        };
        if leaf {
            out.push(query_parameter(prefix, &proto_path, schemas));
        }
        prefix.pop();
    }
}

fn query_parameter(prefix: &[FieldDescriptor], proto_path: &str, schemas: &mut Schemas) -> Json {
    let field = prefix.last().expect("a parameter names a field");
    let name = prefix.iter().map(|f| f.json_name()).collect::<Vec<_>>().join(".");
    let mut schema = schemas.field(field);
    let mut notes: Vec<String> = comments::of_field(field).into_iter().collect();
    if name != proto_path {
        notes.push(format!("Also accepted as `{proto_path}`."));
    }
    if field.is_list() {
        notes.push("Repeated: give the parameter once per value.".into());
    }
    if let Json::Object(fields) = &mut schema {
        // The description goes on the parameter.
        fields.remove("description");
    }
    let mut parameter = json!({ "name": name, "in": "query", "required": false, "schema": schema });
    if field.is_list() {
        parameter["style"] = json!("form");
        parameter["explode"] = json!(true);
    }
    if !notes.is_empty() {
        parameter["description"] = Json::String(notes.join("\n\n"));
    }
    parameter
}
