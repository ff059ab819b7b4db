//! Renders a gRPC status in each wire format: the one code→HTTP table, Connect's error JSON,
//! `google.rpc.Status` JSON for REST, and gRPC-Web trailers.

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::{Map, Value, json};
use tonic::{Code, Status};

use crate::proto::google::rpc;

/// The one table from gRPC code to HTTP status (REST and Connect alike).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status"),
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

/// Connect's spelling of each code.
pub fn connect_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The `google.rpc.Status` a status carries in its details (every status we raise has one; a
/// status from elsewhere gets one built from its code and message).
pub fn rpc_status(status: &Status) -> rpc::Status {
    rpc::Status::decode(status.details()).unwrap_or_else(|_| rpc::Status {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: Vec::new(),
    })
}

/// Expands an `Any` into JSON: `{"@type": ..., <fields>}` when the type is in the pool.
fn any_json(pool: &DescriptorPool, any: &pbjson_types::Any) -> Value {
    let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
    let decoded = pool
        .get_message_by_name(type_name)
        .and_then(|desc| DynamicMessage::decode(desc, any.value.as_ref()).ok())
        .and_then(|m| serde_json::to_value(&m).ok());
    let fields = match decoded {
        Some(Value::Object(fields)) => fields,
        _ => Map::from_iter([("value".to_owned(), Value::String(STANDARD_NO_PAD.encode(&any.value)))]),
    };
    let mut object = Map::from_iter([("@type".to_owned(), Value::String(any.type_url.clone()))]);
    object.extend(fields);
    Value::Object(object)
}

/// REST: `{"code": 5, "message": "...", "details": [{"@type": "...", ...}]}`.
pub fn rest_body(pool: &DescriptorPool, status: &Status) -> Bytes {
    let rpc = rpc_status(status);
    let details: Vec<Value> = rpc.details.iter().map(|any| any_json(pool, any)).collect();
    let mut body = json!({ "code": status.code() as i32, "message": status.message() });
    if !details.is_empty() {
        body["details"] = Value::Array(details);
    }
    Bytes::from(serde_json::to_vec(&body).expect("json values serialize"))
}

/// Connect: `{"code": "not_found", "message": "...", "details": [{"type", "value", "debug"}]}`.
pub fn connect_body(pool: &DescriptorPool, status: &Status) -> Bytes {
    let rpc = rpc_status(status);
    let details: Vec<Value> = rpc
        .details
        .iter()
        .map(|any| {
            let mut debug = any_json(pool, any);
            if let Value::Object(fields) = &mut debug {
                fields.remove("@type");
            }
            json!({
                "type": any.type_url.rsplit('/').next().unwrap_or_default(),
                "value": STANDARD_NO_PAD.encode(&any.value),
                "debug": debug,
            })
        })
        .collect();
    let mut body = json!({ "code": connect_code(status.code()), "message": status.message() });
    if !details.is_empty() {
        body["details"] = Value::Array(details);
    }
    Bytes::from(serde_json::to_vec(&body).expect("json values serialize"))
}

/// The trailers (gRPC) or trailer frame fields (gRPC-Web) of a status.
pub fn status_trailers(status: &Status) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    // `Status::add_header` writes grpc-status, grpc-message (percent-encoded) and the details.
    if status.add_header(&mut trailers).is_err() {
        trailers.insert("grpc-status", HeaderValue::from(status.code() as i32));
    }
    trailers
}

/// `WWW-Authenticate: Bearer` on HTTP 401 answers.
pub fn www_authenticate(status: &Status) -> Option<(header::HeaderName, HeaderValue)> {
    (status.code() == Code::Unauthenticated).then(|| (header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_contract_status() {
        let table = [
            (1, 499),
            (2, 500),
            (3, 400),
            (4, 504),
            (5, 404),
            (6, 409),
            (7, 403),
            (8, 429),
            (9, 400),
            (10, 409),
            (11, 400),
            (12, 501),
            (13, 500),
            (14, 503),
            (15, 500),
            (16, 401),
        ];
        for (code, http) in table {
            assert_eq!(http_status(Code::from_i32(code)).as_u16(), http, "code {code}");
        }
    }
}
