//! The generator on binding shapes the Session API does not use (a multi-segment variable,
//! additional bindings, a named body field, a verb, `response_body`, nested and repeated query
//! parameters, recursive messages), and the document checked against the transcoder itself:
//! every query parameter it lists is one `json::rest_request` accepts.

use std::path::Path;

use http::Method;
use prost_reflect::DescriptorPool;
use serde_json::{Value as Json, json};

use super::document;
use crate::transport::{json::rest_request, routes::Routes};

fn example_pool() -> DescriptorPool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut compiler = protox::Compiler::new([root.join("proto"), root.join("tests/fixtures/openapi")]).unwrap();
    compiler.include_imports(true).include_source_info(true).open_files(["example/v1/things.proto"]).unwrap();
    DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice()).unwrap()
}

fn example() -> (Routes, Json) {
    let pool = example_pool();
    let routes = Routes::from_pool(&pool).unwrap();
    let document = document(&pool, &routes).unwrap();
    (routes, document)
}

fn names(operation: &Json, location: &str) -> Vec<String> {
    let all = operation["parameters"].as_array().cloned().unwrap_or_default();
    all.iter().filter(|p| p["in"] == location).map(|p| p["name"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn bindings_become_paths_parameters_bodies_and_answers() {
    let (_, doc) = example();
    let get = &doc["paths"]["/v1/shelves/{parent}/things/{thing_id}"]["get"];
    assert_eq!(get["operationId"], "example.v1.ThingService.GetThing");
    assert_eq!(get["description"], "Get a thing.");
    assert_eq!(names(get, "path"), ["parent", "thing_id"]);
    let parent = &get["parameters"][0]["description"];
    assert!(parent.as_str().unwrap().contains("`shelves/*`"), "{parent}");
    // Nested through singular messages (a recursive one once), repeated scalars, scalar-like
    // well-known types; never a map, a repeated message or a field the path binds.
    assert_eq!(
        names(get, "query"),
        ["filter.namePrefix", "filter.kind", "tags", "since", "flag", "big", "pageSize", "minScore"],
    );
    let query = |name: &str| get["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    assert_eq!(query("tags")["schema"]["type"], "array");
    assert_eq!(query("tags")["explode"], true);
    assert_eq!(query("since")["schema"]["format"], "date-time");
    assert_eq!(query("flag")["schema"]["type"], "boolean");
    assert_eq!(query("big")["schema"]["type"], "string");
    assert_eq!(query("filter.kind")["schema"]["enum"], json!(["KIND_UNSPECIFIED", "KIND_A"]));
    assert!(query("filter.namePrefix")["description"].as_str().unwrap().contains("`filter.name_prefix`"));

    let again = &doc["paths"]["/v1/things/{thing_id}"]["get"];
    assert_eq!(again["operationId"], "example.v1.ThingService.GetThing_1");
    // This binding leaves `parent` to the query.
    assert_eq!(names(again, "query")[0], "parent");

    // A named body field: the body is that field, the path binds inside it, the rest is query.
    let update = &doc["paths"]["/v1/things/{thing.id}"]["patch"];
    assert_eq!(
        update["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/example.v1.Thing"
    );
    assert_eq!(names(update, "path"), ["thing.id"]);
    assert_eq!(names(update, "query"), ["updateMask"]);

    // A verb, and `response_body` naming the field whose message is the answer.
    let cancel = &doc["paths"]["/v1/things/{id}:cancel"]["post"];
    assert_eq!(names(cancel, "query"), Vec::<String>::new());
    assert_eq!(
        cancel["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/example.v1.Thing"
    );

    let thing = &doc["components"]["schemas"]["example.v1.Thing"];
    assert_eq!(thing["properties"]["parent"]["$ref"], "#/components/schemas/example.v1.Thing");
    assert_eq!(thing["properties"]["children"]["items"]["$ref"], "#/components/schemas/example.v1.Thing");
    assert_eq!(thing["properties"]["version"]["type"], "string");
    assert_eq!(thing["properties"]["blob"]["format"], "byte");
    assert_eq!(thing["properties"]["parts"]["propertyNames"]["pattern"], "^-?[0-9]+$");
    assert_eq!(thing["not"], json!({ "anyOf": [{ "required": ["user", "group"] }] }));
    assert_eq!(doc["tags"], json!([{ "name": "example.v1.ThingService", "description": "Things on shelves." }]));
}

/// A query value of the type `schema` describes.
fn sample(schema: &Json) -> &'static str {
    let schema = if schema["type"] == "array" { &schema["items"] } else { schema };
    match (schema["type"].as_str(), schema["format"].as_str()) {
        (_, Some("date-time")) => "2024-01-02T03:04:05Z",
        (Some("boolean"), _) => "true",
        (Some("string"), Some("int64" | "uint64")) | (Some("integer"), _) => "7",
        (Some("string"), Some("byte")) => "AA%3D%3D",
        _ if schema["enum"].is_array() => "KIND_A",
        _ if schema["anyOf"].is_array() => "1.5",
        _ => "x",
    }
}

/// Every query parameter the document lists, in the example and in the Session API, is one the
/// transcoder takes; a field it leaves out is refused.
#[test]
fn every_listed_query_parameter_is_accepted_by_the_transcoder() {
    let session_pool = crate::proto::pool();
    let session_routes = Routes::from_pool(session_pool).unwrap();
    let session_doc = document(session_pool, &session_routes).unwrap();
    let (example_routes, example_doc) = example();
    let mut checked = 0;
    for (routes, doc) in [(&session_routes, &session_doc), (&example_routes, &example_doc)] {
        for route in routes.iter() {
            let (path, placeholders) = route.openapi_path();
            let operation = &doc["paths"][&path][route.http_method.as_str().to_ascii_lowercase()];
            let mut concrete = path.clone();
            for placeholder in &placeholders {
                concrete = concrete.replace(&format!("{{{}}}", placeholder.name), "v");
            }
            let matched = routes.find(&route.http_method, &concrete).unwrap();
            for parameter in operation["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "query") {
                let query = format!("{}={}", parameter["name"].as_str().unwrap(), sample(&parameter["schema"]));
                let accepted = rest_request(&matched.route, &matched.variables, Some(&query), b"");
                assert!(accepted.is_ok(), "{} {path}?{query}: {:?}", route.http_method, accepted.err());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 1 + 8 + 9 + 1, "sessionToken; GetThing's bindings; updateMask");
    let get = example_routes.find(&Method::GET, "/v1/things/t").unwrap();
    for left_out in ["labels=x", "others=x", "thingId=y", "filter=x"] {
        assert!(rest_request(&get.route, &get.variables, Some(left_out), b"").is_err(), "{left_out}");
    }
}

#[test]
fn the_example_document_is_valid_openapi_3_1() {
    let (_, doc) = example();
    let official: Json = serde_json::from_str(include_str!("../../../tests/fixtures/openapi-3.1-schema.json")).unwrap();
    let validator = jsonschema::validator_for(&official).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}
