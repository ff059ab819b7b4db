//! `GET /openapi.json` on a live server: a valid OpenAPI 3.1 document (checked against the
//! official schema with a standard validator) that says what a REST client relies on: each
//! route with its method, parameters and success status, proto3 JSON types, the error body and
//! bearer security; and real answers that conform to it.

mod common;

use common::TestServer;
use jsonschema::Validator;
use serde_json::{Value, json};
use sessiond::domain::Permission;

/// The official OpenAPI 3.1 schema (`https://spec.openapis.org/oas/3.1/schema/2022-10-07`, as
/// the openapi-spec-validator package ships it).
const OPENAPI_31_SCHEMA: &str = include_str!("fixtures/openapi-3.1-schema.json");

async fn fetch_document(server: &TestServer) -> Value {
    let response = reqwest::get(server.url("/openapi.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// A validator of the component `name`, with the document's other components in reach of `$ref`.
fn component_validator(document: &Value, name: &str) -> Validator {
    let mut schema = document.clone();
    schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    schema["$ref"] = json!(format!("#/components/schemas/{name}"));
    jsonschema::options().should_validate_formats(true).build(&schema).unwrap()
}

fn assert_conforms(document: &Value, name: &str, instance: &Value) {
    let validator = component_validator(document, name);
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{instance} does not conform to {name}: {errors:#?}");
}

fn operation<'a>(document: &'a Value, path: &str, method: &str) -> &'a Value {
    let operation = &document["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not in the document");
    operation
}

fn parameters(operation: &Value, location: &str) -> Vec<String> {
    let all = operation["parameters"].as_array().cloned().unwrap_or_default();
    all.iter().filter(|p| p["in"] == location).map(|p| p["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_and_its_schemas_valid_json_schema() {
    let server = TestServer::sqlite().await;
    let document = fetch_document(&server).await;
    let official: Value = serde_json::from_str(OPENAPI_31_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&official).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(&document).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "the document breaks the OpenAPI 3.1 schema: {errors:#?}");
    // The validator is in earnest: a response that is not a Response Object is caught.
    let mut broken = document.clone();
    broken["paths"]["/v2/sessions"]["post"]["responses"]["201"] = json!("created");
    assert!(!validator.is_valid(&broken));
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    // The official schema leaves Schema Objects unchecked: each must be valid JSON Schema 2020-12,
    // and every reference must resolve (building a validator resolves them).
    let components = document["components"]["schemas"].as_object().unwrap();
    for (name, schema) in components {
        jsonschema::meta::validate(schema).unwrap_or_else(|e| panic!("component {name}: {e}"));
        component_validator(&document, name);
    }
}

#[tokio::test]
async fn every_rest_route_is_there_with_its_method_parameters_and_status() {
    let server = TestServer::sqlite().await;
    let document = fetch_document(&server).await;
    // (path, method, success status, path parameters, query parameters, takes a body)
    let session_api = [
        ("/v2/sessions", "post", "201", vec![], vec![], true),
        ("/v2/sessions/search", "post", "200", vec![], vec![], true),
        ("/v2/sessions/{session_id}", "get", "200", vec!["session_id"], vec!["sessionToken"], false),
        ("/v2/sessions/{session_id}", "patch", "200", vec!["session_id"], vec![], true),
        // `body: "*"` takes every field from the body: no query parameters.
        ("/v2/sessions/{session_id}", "delete", "200", vec!["session_id"], vec![], true),
    ];
    for (path, method, status, path_params, query_params, body) in session_api {
        let op = operation(&document, path, method);
        assert!(op["responses"][status]["content"]["application/json"]["schema"]["$ref"].is_string(), "{op}");
        assert_eq!(parameters(op, "path"), path_params, "{method} {path}");
        assert_eq!(parameters(op, "query"), query_params, "{method} {path}");
        assert_eq!(op["requestBody"].is_object(), body, "{method} {path}");
        for code in ["400", "401", "403", "404", "4XX", "5XX"] {
            assert!(op["responses"][code]["$ref"].is_string(), "{method} {path} lacks {code}");
        }
    }
    let create = operation(&document, "/v2/sessions", "post");
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/zitadel.session.v2.CreateSessionRequest"
    );
    assert_eq!(
        create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/zitadel.session.v2.CreateSessionResponse"
    );
    assert!(create["responses"].get("200").is_none(), "CreateSession answers 201, never 200");
    let path_param = &operation(&document, "/v2/sessions/{session_id}", "get")["parameters"][0];
    assert_eq!(path_param["required"], true);
    assert_eq!(path_param["schema"], json!({ "type": "string", "minLength": 1 }));

    // Every route the server routes, whichever service it belongs to, is described.
    let routes = sessiond::transport::routes::Routes::from_pool(sessiond::proto::pool()).unwrap();
    for route in routes.iter() {
        let (path, _) = route.openapi_path();
        let method = route.http_method.as_str().to_ascii_lowercase();
        let op = operation(&document, &path, &method);
        assert!(op["responses"][route.success_code.to_string()].is_object(), "{method} {path}");
    }
}

#[tokio::test]
async fn schemas_speak_proto3_json() {
    let server = TestServer::sqlite().await;
    let document = fetch_document(&server).await;
    let schemas = &document["components"]["schemas"];
    let property = |message: &str, name: &str| schemas[message]["properties"][name].clone();
    // uint64 as a decimal string, never a JSON number.
    let sequence = property("zitadel.object.v2.Details", "sequence");
    assert_eq!(sequence["type"], "string", "{sequence}");
    assert!(sequence["pattern"].is_string());
    assert_eq!(property("zitadel.object.v2.ListQuery", "limit")["type"], "integer");
    assert_eq!(property("zitadel.session.v2.Session", "creationDate")["format"], "date-time");
    let lifetime = property("zitadel.session.v2.CreateSessionRequest", "lifetime");
    assert_eq!(lifetime["type"], "string");
    assert!(regex_matches(&lifetime["pattern"], "1.5s") && !regex_matches(&lifetime["pattern"], "1.5"));
    // Enums by name; maps as objects; bytes as base64; lowerCamelCase names.
    let sorting = property("zitadel.session.v2.ListSessionsRequest", "sortingColumn");
    assert!(sorting["enum"].as_array().unwrap().contains(&json!("SESSION_FIELD_NAME_CREATION_DATE")), "{sorting}");
    let metadata = property("zitadel.session.v2.Session", "metadata");
    assert_eq!(metadata["type"], "object");
    assert_eq!(metadata["additionalProperties"]["format"], "byte");
    assert!(schemas["zitadel.session.v2.Checks"]["properties"]["webAuthN"]["$ref"].is_string());
    assert_eq!(schemas["zitadel.session.v2.Checks"]["additionalProperties"], false, "unknown fields are refused");
    // Two members of one oneof are refused by the server, so the schema refuses them too.
    let check_user = component_validator(&document, "zitadel.session.v2.CheckUser");
    assert!(check_user.is_valid(&json!({ "loginName": "alice" })));
    assert!(!check_user.is_valid(&json!({ "loginName": "alice", "userId": "1" })));
}

fn regex_matches(pattern: &Value, text: &str) -> bool {
    jsonschema::is_valid(&json!({ "type": "string", "pattern": pattern }), &json!(text))
}

#[tokio::test]
async fn errors_and_security_are_described_and_answers_conform() {
    let server = TestServer::sqlite().await;
    let document = fetch_document(&server).await;
    // Bearer security on every operation.
    assert_eq!(document["security"], json!([{ "bearer": [] }]));
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["type"], "http");
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let status = &document["components"]["schemas"]["google.rpc.Status"];
    assert_eq!(status["required"], json!(["code", "message"]));
    assert_eq!(status["properties"]["details"]["items"]["required"], json!(["@type"]));
    let unauthenticated = &document["components"]["responses"]["Unauthenticated"];
    assert!(unauthenticated["headers"]["WWW-Authenticate"].is_object());

    // Real answers, success and error, conform to the schemas the document gives them.
    let client = reqwest::Client::new();
    let actor = server.actor("alice", &[Permission::SessionRead, Permission::SessionWrite]).await;
    let created = client
        .post(server.url("/v2/sessions"))
        .bearer_auth(&actor.token)
        .json(&json!({ "checks": { "user": { "userId": actor.id } }, "metadata": { "k": "dg==" }, "lifetime": "60s" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_conforms(&document, "zitadel.session.v2.CreateSessionResponse", &created);
    let wrong = json!({ "sessionId": 5 });
    assert!(!component_validator(&document, "zitadel.session.v2.CreateSessionResponse").is_valid(&wrong));
    let id = created["sessionId"].as_str().unwrap();
    let got = client.get(server.url(&format!("/v2/sessions/{id}"))).bearer_auth(&actor.token).send().await.unwrap();
    assert_eq!(got.status(), 200);
    let got: Value = got.json().await.unwrap();
    assert_conforms(&document, "zitadel.session.v2.GetSessionResponse", &got);
    let missing = client.get(server.url("/v2/sessions/nope")).bearer_auth(&actor.token).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    // The handler's errors are JSON as the document says (they once kept the inner gRPC call's
    // `application/grpc`, which schemathesis caught).
    assert_eq!(missing.headers()["content-type"], "application/json");
    assert_conforms(&document, "google.rpc.Status", &missing.json().await.unwrap());
    let anonymous = client.get(server.url(&format!("/v2/sessions/{id}"))).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_conforms(&document, "google.rpc.Status", &anonymous.json().await.unwrap());
}

#[tokio::test]
async fn the_document_is_public_and_read_only() {
    let server = TestServer::sqlite().await;
    let client = reqwest::Client::new();
    // No credential needed; browsers on other origins may read it.
    let response =
        client.get(server.url("/openapi.json")).header("origin", "https://docs.example").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "https://docs.example");
    let head = client.head(server.url("/openapi.json")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let post = client.post(server.url("/openapi.json")).body("{}").send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    let body: Value = post.json().await.unwrap();
    assert_eq!(body["code"], 12, "{body}");
}
