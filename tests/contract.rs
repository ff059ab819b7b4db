//! The descriptors served by gRPC reflection (v1 and v1alpha) match the wire contract
//! (`tests/fixtures/session-v2.md`, a copy of the contract's tables) field by field: names, numbers, types, labels, oneofs, JSON
//! names, enum values, RPCs and their HTTP bindings. Health answers SERVING.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt;
use prost::Message;
use prost_reflect::{Cardinality, DescriptorPool, FieldDescriptor, Kind};
use sessiond::config::Config;
use tokio::{net::TcpListener, sync::oneshot};
use tonic::transport::{Channel, Endpoint};
use tonic_reflection::pb::{v1, v1alpha};

/// The contract as this repository carries it (a fresh clone has nothing beside it).
fn contract_text() -> String {
    include_str!("fixtures/session-v2.md").to_owned()
}

/// One field row of the contract: (number, name, type, label, json).
type FieldRow = (u32, String, String, String, String);

/// Messages → fields, enums → values, RPC rows, as the contract lists them.
#[derive(Default)]
struct Contract {
    messages: BTreeMap<String, Vec<FieldRow>>,
    enums: BTreeMap<String, Vec<(String, i32)>>,
    rpcs: Vec<(String, String, String, String)>,
}

fn cells(line: &str) -> Vec<String> {
    line.trim().trim_matches('|').split('|').map(|c| c.trim().trim_matches('`').to_owned()).collect()
}

fn parse_contract() -> Contract {
    let mut contract = Contract::default();
    let mut current: Option<String> = None;
    let mut section = "";
    for line in contract_text().lines() {
        if let Some(h) = line.strip_prefix("### `") {
            let name = h.trim_end_matches('`').to_owned();
            contract.messages.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        if let Some(h) = line.strip_prefix("## ") {
            current = None;
            section = if h.starts_with("Newer fields") {
                "newer"
            } else if h.starts_with("Service") {
                "service"
            } else if h.starts_with("Enums") {
                "enums"
            } else {
                ""
            };
            continue;
        }
        if section == "enums"
            && let Some(rest) = line.strip_prefix("- `")
        {
            let (name, values) = rest.split_once("`: ").expect("enum line");
            let values = values
                .split(", ")
                .map(|v| {
                    let (n, x) = v.split_once('=').expect("enum value");
                    (n.to_owned(), x.parse().expect("enum number"))
                })
                .collect();
            contract.enums.insert(name.to_owned(), values);
            continue;
        }
        if !line.starts_with('|')
            || line.starts_with("|---")
            || line.starts_with("| #")
            || line.starts_with("| message")
        {
            continue;
        }
        let c = cells(line);
        match (section, &current) {
            ("service", _) if c.len() == 3 && c[0] != "RPC" => {
                let (req, resp) = c[1].split_once(" → ").expect("rpc types");
                contract.rpcs.push((
                    c[0].clone(),
                    req.trim_matches('`').to_owned(),
                    resp.trim_matches('`').to_owned(),
                    c[2].clone(),
                ));
            }
            ("newer", _) if c.len() == 5 => {
                let message = c[0].split(' ').next().unwrap().trim_matches('`').to_owned();
                let label = if c[0].contains("(oneof query)") { "oneof query".to_owned() } else { String::new() };
                let ty = c[3].split(' ').next().unwrap().trim_matches('`').to_owned();
                contract.messages.entry(message).or_default().push((
                    c[1].parse().unwrap(),
                    c[2].clone(),
                    ty,
                    label,
                    c[4].clone(),
                ));
            }
            (_, Some(message)) if c.len() == 5 => {
                contract.messages.get_mut(message).unwrap().push((
                    c[0].parse().expect("field number"),
                    c[1].clone(),
                    c[2].clone(),
                    c[3].clone(),
                    c[4].clone(),
                ));
            }
            _ => {}
        }
    }
    contract
}

fn type_name(field: &FieldDescriptor) -> String {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else { unreachable!() };
        let key = type_of_kind(&entry.map_entry_key_field().kind());
        let value = type_of_kind(&entry.map_entry_value_field().kind());
        return format!("map<{key}, {value}>");
    }
    type_of_kind(&field.kind())
}

fn type_of_kind(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
    }
}

fn label(field: &FieldDescriptor) -> String {
    if field.is_map() {
        return String::new();
    }
    match field.containing_oneof() {
        Some(o) if o.is_synthetic() => "optional".into(),
        Some(o) => format!("oneof {}", o.name()),
        None if field.cardinality() == Cardinality::Repeated => "repeated".into(),
        None => String::new(),
    }
}

/// Starts the server on a fresh SQLite file; returns its address and a stopper.
async fn start() -> (std::net::SocketAddr, oneshot::Sender<()>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("sessiond.db").display());
    let store = sessiond::store::open(&url, Default::default()).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let config = Config { database: url, ..Config::default() };
    tokio::spawn(sessiond::server::serve(listener, config, store, async {
        let _ = stopped.await;
    }));
    (addr, stop, dir)
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

/// Every file reflection v1 serves for the session service and its imports (asked for one by one,
/// as grpcurl does), as a descriptor pool.
async fn reflected_pool_v1(channel: Channel) -> DescriptorPool {
    use v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut client = ServerReflectionClient::new(channel);
    // Raw bytes: prost_types would drop the options (google.api.http) on decoding.
    let mut files: BTreeMap<String, (Vec<String>, Vec<u8>)> = BTreeMap::new();
    let mut wanted = vec![MessageRequest::FileContainingSymbol("zitadel.session.v2.SessionService".into())];
    while let Some(message_request) = wanted.pop() {
        let request = ServerReflectionRequest { host: String::new(), message_request: Some(message_request) };
        let mut responses =
            client.server_reflection_info(futures_util::stream::iter([request])).await.unwrap().into_inner();
        while let Some(response) = responses.next().await {
            let Some(MessageResponse::FileDescriptorResponse(r)) = response.unwrap().message_response else {
                panic!("unexpected reflection answer");
            };
            for bytes in r.file_descriptor_proto {
                let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
                for dependency in &file.dependency {
                    if !files.contains_key(dependency) {
                        wanted.push(MessageRequest::FileByFilename(dependency.clone()));
                    }
                }
                files.insert(file.name().to_owned(), (file.dependency.clone(), bytes));
            }
        }
    }
    // Add files after their imports.
    let mut pool = DescriptorPool::new();
    while !files.is_empty() {
        let ready: Vec<String> = files
            .iter()
            .filter(|(_, (deps, _))| deps.iter().all(|d| pool.get_file_by_name(d).is_some()))
            .map(|(name, _)| name.clone())
            .collect();
        assert!(!ready.is_empty(), "reflected files have unresolvable imports: {:?}", files.keys());
        for name in ready {
            let (_, bytes) = files.remove(&name).unwrap();
            pool.decode_file_descriptor_proto(bytes.as_slice()).expect("reflected file is valid");
        }
    }
    pool
}

#[tokio::test]
async fn reflection_v1_descriptors_match_the_contract_field_by_field() {
    let (addr, _stop, _dir) = start().await;
    let pool = reflected_pool_v1(channel(addr).await).await;
    let contract = parse_contract();
    assert!(contract.messages.len() >= 50, "parsed {} messages from the contract", contract.messages.len());

    let mut compared = 0;
    for (name, rows) in &contract.messages {
        let message = pool.get_message_by_name(name).unwrap_or_else(|| panic!("reflection lacks message {name}"));
        let served: BTreeSet<u32> = message.fields().map(|f| f.number()).collect();
        let listed: BTreeSet<u32> = rows.iter().map(|r| r.0).collect();
        assert_eq!(served, listed, "{name}: field numbers");
        for (number, field_name, ty, row_label, json) in rows {
            let field = message.get_field(*number).unwrap();
            assert_eq!(field.name(), field_name, "{name}.{number}: name");
            assert_eq!(type_name(&field), *ty, "{name}.{field_name}: type");
            // The newer-fields table gives no label for message fields; message fields track
            // presence either way.
            if !(row_label.is_empty() && label(&field) == "optional" && matches!(field.kind(), Kind::Message(_))) {
                assert_eq!(label(&field), *row_label, "{name}.{field_name}: label");
            }
            assert_eq!(field.json_name(), json, "{name}.{field_name}: JSON name");
            compared += 1;
        }
    }
    assert!(compared >= 122, "compared {compared} fields");

    for (name, values) in &contract.enums {
        let e = pool.get_enum_by_name(name).unwrap_or_else(|| panic!("reflection lacks enum {name}"));
        let served: Vec<(String, i32)> = e.values().map(|v| (v.name().to_owned(), v.number())).collect();
        assert_eq!(&served, values, "enum {name}");
    }

    let service = pool.get_service_by_name("zitadel.session.v2.SessionService").unwrap();
    assert_eq!(service.methods().count(), contract.rpcs.len());
    let http = pool.get_extension_by_name("google.api.http").expect("google.api.http is served");
    for (rpc, request, response, binding) in &contract.rpcs {
        let method = service.methods().find(|m| m.name() == rpc).unwrap_or_else(|| panic!("no RPC {rpc}"));
        assert_eq!(method.input().full_name(), format!("zitadel.session.v2.{request}"));
        assert_eq!(method.output().full_name(), format!("zitadel.session.v2.{response}"));
        let options = method.options();
        let rule = options.get_extension(&http);
        let rule = rule.as_message().unwrap().transcode_to::<sessiond::proto::google::api::HttpRule>().unwrap();
        let (verb, path) = match rule.pattern.unwrap() {
            sessiond::proto::google::api::http_rule::Pattern::Get(p) => ("GET", p),
            sessiond::proto::google::api::http_rule::Pattern::Post(p) => ("POST", p),
            sessiond::proto::google::api::http_rule::Pattern::Delete(p) => ("DELETE", p),
            sessiond::proto::google::api::http_rule::Pattern::Patch(p) => ("PATCH", p),
            other => panic!("{rpc}: unexpected pattern {other:?}"),
        };
        let body = if rule.body.is_empty() { String::new() } else { format!(" body={}", rule.body) };
        assert_eq!(format!("{verb} {path}{body}"), *binding, "{rpc}: HTTP binding");
    }
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_services() {
    use v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let (addr, _stop, _dir) = start().await;
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        client.server_reflection_info(futures_util::stream::iter([request])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains("zitadel.session.v2.SessionService"), "{names:?}");
    assert!(names.contains("zitadel.user.v2.UserService"), "{names:?}");
}

#[tokio::test]
async fn health_reports_serving() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let (addr, _stop, _dir) = start().await;
    let mut client = HealthClient::new(channel(addr).await);
    for service in ["", "zitadel.session.v2.SessionService", "zitadel.user.v2.UserService"] {
        let response = client.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "service `{service}`");
    }
}
