//! One client for the five wire formats. A call names the RPC and gives the request as proto3
//! JSON; it goes out the way that protocol's clients send it (tonic for gRPC, hand-built frames
//! for gRPC-Web, JSON bodies for Connect and REST) and comes back as an `Outcome` of one shape,
//! so that each behaviour is asserted once for every protocol.

use std::fmt;

use base64::{
    Engine,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use prost::Message;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};
use sessiond::proto::{
    google::rpc,
    session::{self as pb, session_service_client::SessionServiceClient},
    user::{self as user_pb, user_service_client::UserServiceClient},
    zitadel::v1::{CredentialsCheckError, ErrorDetail},
};
use tonic::{
    Code,
    metadata::{MetadataKey, MetadataValue},
    transport::Channel,
};

pub const SERVICE: &str = "zitadel.session.v2.SessionService";
pub const USER_SERVICE: &str = "zitadel.user.v2.UserService";
const ERROR_DETAIL_TYPE: &str = "type.googleapis.com/zitadel.v1.ErrorDetail";
const CREDENTIALS_CHECK_ERROR_TYPE: &str = "type.googleapis.com/zitadel.v1.CredentialsCheckError";

/// Standard base64, padding optional: what gRPC-Web and Connect peers send.
pub const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Everything but RFC 3986's unreserved characters is escaped in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

pub fn escape(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// The wire formats under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    GrpcWeb,
    GrpcWebText,
    ConnectJson,
    /// Connect with binary protobuf bodies (`application/proto`).
    ConnectProto,
    Rest,
}

impl Protocol {
    pub const ALL: [Protocol; 6] = [
        Protocol::Grpc,
        Protocol::GrpcWeb,
        Protocol::GrpcWebText,
        Protocol::ConnectJson,
        Protocol::ConnectProto,
        Protocol::Rest,
    ];

    /// gRPC and gRPC-Web: errors travel in trailers over HTTP 200 (or an unseen status).
    pub fn is_grpc_family(self) -> bool {
        matches!(self, Protocol::Grpc | Protocol::GrpcWeb | Protocol::GrpcWebText)
    }

    /// Connect and REST: errors are JSON under the HTTP status the code's class maps to.
    pub fn is_json(self) -> bool {
        matches!(self, Protocol::ConnectJson | Protocol::ConnectProto | Protocol::Rest)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Grpc => "gRPC",
            Protocol::GrpcWeb => "gRPC-Web",
            Protocol::GrpcWebText => "gRPC-Web-text",
            Protocol::ConnectJson => "Connect JSON",
            Protocol::ConnectProto => "Connect proto",
            Protocol::Rest => "REST",
        })
    }
}

/// The RPCs of the session service, and the user service's passkey registration (not in `ALL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    CreateSession,
    GetSession,
    SetSession,
    DeleteSession,
    ListSessions,
    RegisterPasskey,
    VerifyPasskeyRegistration,
}

impl Rpc {
    pub const ALL: [Rpc; 5] =
        [Rpc::CreateSession, Rpc::GetSession, Rpc::SetSession, Rpc::DeleteSession, Rpc::ListSessions];

    pub fn name(self) -> &'static str {
        match self {
            Rpc::CreateSession => "CreateSession",
            Rpc::GetSession => "GetSession",
            Rpc::SetSession => "SetSession",
            Rpc::DeleteSession => "DeleteSession",
            Rpc::ListSessions => "ListSessions",
            Rpc::RegisterPasskey => "RegisterPasskey",
            Rpc::VerifyPasskeyRegistration => "VerifyPasskeyRegistration",
        }
    }

    /// The gRPC / gRPC-Web / Connect path.
    pub fn path(self) -> String {
        let service = match self {
            Rpc::RegisterPasskey | Rpc::VerifyPasskeyRegistration => USER_SERVICE,
            _ => SERVICE,
        };
        format!("/{service}/{}", self.name())
    }

    /// The request message's protobuf bytes, built from JSON through the generated serde impls.
    pub fn encode(self, request: Value) -> Vec<u8> {
        match self {
            Rpc::CreateSession => proto_of::<pb::CreateSessionRequest>(request),
            Rpc::GetSession => proto_of::<pb::GetSessionRequest>(request),
            Rpc::SetSession => proto_of::<pb::SetSessionRequest>(request),
            Rpc::DeleteSession => proto_of::<pb::DeleteSessionRequest>(request),
            Rpc::ListSessions => proto_of::<pb::ListSessionsRequest>(request),
            Rpc::RegisterPasskey => proto_of::<user_pb::RegisterPasskeyRequest>(request),
            Rpc::VerifyPasskeyRegistration => proto_of::<user_pb::VerifyPasskeyRegistrationRequest>(request),
        }
    }

    /// The response message as proto3 JSON.
    pub fn decode(self, bytes: &[u8]) -> Value {
        match self {
            Rpc::CreateSession => json_of_proto::<pb::CreateSessionResponse>(bytes),
            Rpc::GetSession => json_of_proto::<pb::GetSessionResponse>(bytes),
            Rpc::SetSession => json_of_proto::<pb::SetSessionResponse>(bytes),
            Rpc::DeleteSession => json_of_proto::<pb::DeleteSessionResponse>(bytes),
            Rpc::ListSessions => json_of_proto::<pb::ListSessionsResponse>(bytes),
            Rpc::RegisterPasskey => json_of_proto::<user_pb::RegisterPasskeyResponse>(bytes),
            Rpc::VerifyPasskeyRegistration => json_of_proto::<user_pb::VerifyPasskeyRegistrationResponse>(bytes),
        }
    }
}

fn proto_of<T: Message + DeserializeOwned>(request: Value) -> Vec<u8> {
    let message: T = serde_json::from_value(request.clone())
        .unwrap_or_else(|e| panic!("test request {request} is not valid for its message: {e}"));
    message.encode_to_vec()
}

fn json_of_proto<T: Message + Default + Serialize>(bytes: &[u8]) -> Value {
    let message = T::decode(bytes).unwrap_or_else(|e| panic!("response message does not decode: {e}"));
    serde_json::to_value(message).expect("messages serialize to JSON")
}

/// Request headers, in order; the same name may repeat.
#[derive(Debug, Clone, Default)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// No headers at all (in particular no `authorization`).
    pub fn none() -> Self {
        Self::default()
    }

    /// `authorization: Bearer <token>`.
    pub fn bearer(token: &str) -> Self {
        Self::none().with("authorization", &format!("Bearer {token}"))
    }

    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.push((name.to_owned(), value.to_owned()));
        self
    }

    /// As `with`, unless a header of that name is already set.
    fn or_with(self, name: &str, value: &str) -> Self {
        if self.0.iter().any(|(set, _)| set.eq_ignore_ascii_case(name)) { self } else { self.with(name, value) }
    }

    fn apply(&self, mut builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        for (name, value) in &self.0 {
            builder = builder.header(name, value);
        }
        builder
    }
}

/// What came back, in the same terms for every protocol.
#[derive(Clone)]
pub struct Outcome {
    pub protocol: Protocol,
    /// The HTTP status; `None` for gRPC through tonic, which does not show it.
    pub http: Option<u16>,
    pub headers: HeaderMap,
    /// `Code::Ok` on success.
    pub code: Code,
    /// The `ErrorDetail` (or `CredentialsCheckError`) id; empty on success.
    pub id: String,
    /// The status message (grpc-message, Connect/REST `message`).
    pub message: String,
    /// `CredentialsCheckError.failed_attempts`, when the detail is one.
    pub failed_attempts: Option<i32>,
    /// The response message as proto3 JSON on success; on error, whatever body came.
    pub body: Value,
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] http {:?}, code {:?}, id `{}`, message `{}`, body {}",
            self.protocol, self.http, self.code, self.id, self.message, self.body
        )
    }
}

/// The contract's table from gRPC code to HTTP status (REST and Connect).
pub fn http_of(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::DeadlineExceeded => 504,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::PermissionDenied => 403,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::Unauthenticated => 401,
    }
}

fn connect_code(name: &str) -> Option<Code> {
    Some(match name {
        "canceled" => Code::Cancelled,
        "unknown" => Code::Unknown,
        "invalid_argument" => Code::InvalidArgument,
        "deadline_exceeded" => Code::DeadlineExceeded,
        "not_found" => Code::NotFound,
        "already_exists" => Code::AlreadyExists,
        "permission_denied" => Code::PermissionDenied,
        "resource_exhausted" => Code::ResourceExhausted,
        "failed_precondition" => Code::FailedPrecondition,
        "aborted" => Code::Aborted,
        "out_of_range" => Code::OutOfRange,
        "unimplemented" => Code::Unimplemented,
        "internal" => Code::Internal,
        "unavailable" => Code::Unavailable,
        "data_loss" => Code::DataLoss,
        "unauthenticated" => Code::Unauthenticated,
        _ => return None,
    })
}

impl Outcome {
    /// The response JSON of a success; panics with the whole outcome otherwise.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.code, Code::Ok, "{self:?}");
        assert!(self.id.is_empty(), "{self:?}");
        &self.body
    }

    /// A success answered with `status` on the protocols that show an HTTP status.
    #[track_caller]
    pub fn ok_with_status(&self, rest_status: u16) -> &Value {
        let expected = match self.protocol {
            Protocol::Rest => Some(rest_status),
            // Raw gRPC shows its HTTP 200; tonic shows none.
            Protocol::Grpc => self.http.map(|_| 200),
            _ => Some(200),
        };
        assert_eq!(self.http, expected, "{self:?}");
        self.ok()
    }

    /// The error `code` with detail `id`, on the HTTP status the contract's table gives.
    #[track_caller]
    pub fn expect_error(&self, code: Code, id: &str) {
        self.expect_error_on(code, id, http_of(code));
    }

    /// As `expect_error`, where REST and Connect answer the HTTP status `json_http` (routing
    /// refusals: 404, 405, 415).
    #[track_caller]
    pub fn expect_error_on(&self, code: Code, id: &str, json_http: u16) {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(self.id, id, "{self:?}");
        assert!(self.message.ends_with(&format!("({id})")), "message must end with the id: {self:?}");
        let expected_http = match self.protocol {
            Protocol::Grpc => self.http.map(|_| 200),
            Protocol::GrpcWeb | Protocol::GrpcWebText => Some(200),
            Protocol::ConnectJson | Protocol::ConnectProto | Protocol::Rest => Some(json_http),
        };
        assert_eq!(self.http, expected_http, "{self:?}");
        if self.protocol.is_json() && code == Code::Unauthenticated {
            let challenge = self.headers.get("www-authenticate").and_then(|v| v.to_str().ok());
            assert_eq!(challenge, Some("Bearer"), "{self:?}");
        }
    }

    /// A string field of the response, `""` when absent (proto3 omits defaults).
    pub fn str(&self, pointer: &str) -> String {
        self.body.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned()
    }
}

/// The decoded `google.rpc.Status` detail: id, message, failed attempts.
fn detail_of(status: &rpc::Status) -> (String, Option<i32>) {
    let Some(any) = status.details.first() else {
        return (String::new(), None);
    };
    match any.type_url.as_str() {
        ERROR_DETAIL_TYPE => {
            let detail = ErrorDetail::decode(any.value.as_ref()).expect("ErrorDetail decodes");
            (detail.id, None)
        }
        CREDENTIALS_CHECK_ERROR_TYPE => {
            let detail = CredentialsCheckError::decode(any.value.as_ref()).expect("CredentialsCheckError decodes");
            (detail.id, Some(detail.failed_attempts))
        }
        other => panic!("unexpected error detail type {other}"),
    }
}

/// grpc-status, grpc-message and grpc-status-details-bin from a header or trailer block.
fn grpc_status_of(fields: &HeaderMap) -> Option<(Code, String, String, Option<i32>)> {
    let code: i32 = fields.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    let message = fields
        .get("grpc-message")
        .map(|v| percent_encoding::percent_decode(v.as_bytes()).decode_utf8_lossy().into_owned())
        .unwrap_or_default();
    let (id, failed_attempts) = match fields.get("grpc-status-details-bin") {
        Some(v) => {
            let bytes = BASE64.decode(v.as_bytes()).expect("grpc-status-details-bin is base64");
            let status = rpc::Status::decode(bytes.as_slice()).expect("grpc-status-details-bin is a google.rpc.Status");
            assert_eq!(status.code, code, "the details' code must match grpc-status");
            detail_of(&status)
        }
        None => (String::new(), None),
    };
    Some((Code::from_i32(code), message, id, failed_attempts))
}

/// A raw HTTP exchange's answer.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: HeaderMap,
}

/// The three transports: HTTP/1.1 (gRPC-Web, Connect, REST), h2c prior knowledge (raw gRPC)
/// and a tonic channel (gRPC through the generated client).
#[derive(Debug, Clone)]
pub struct Clients {
    pub base: String,
    pub http1: reqwest::Client,
    pub h2c: reqwest::Client,
    pub channel: Channel,
}

impl Clients {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        let base = format!("http://{addr}");
        let http1 = reqwest::Client::builder().no_proxy().http1_only().build().expect("HTTP/1.1 client");
        let h2c = reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().expect("h2c client");
        let channel = Channel::from_shared(base.clone()).expect("valid endpoint").connect_lazy();
        Self { base, http1, h2c, channel }
    }

    /// Sends one request as is; the answer with its trailers (h2c only has those).
    pub async fn exchange(&self, h2c: bool, method: Method, path: &str, headers: &Headers, body: Vec<u8>) -> Raw {
        let client = if h2c { &self.h2c } else { &self.http1 };
        let mut builder = headers.apply(client.request(method, format!("{}{path}", self.base)));
        if !body.is_empty() {
            builder = builder.body(body);
        }
        let response = builder.send().await.unwrap_or_else(|e| panic!("{path}: request failed: {e}"));
        let response: http::Response<reqwest::Body> = response.into();
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.unwrap_or_else(|e| panic!("{path}: body failed: {e}"));
        let trailers = collected.trailers().cloned().unwrap_or_default();
        Raw { status: parts.status.as_u16(), headers: parts.headers, body: collected.to_bytes(), trailers }
    }

    /// One RPC over `protocol` with `headers` (authorization included, if any).
    pub async fn call(&self, protocol: Protocol, rpc: Rpc, request: Value, headers: &Headers) -> Outcome {
        match protocol {
            Protocol::Grpc => self.tonic_call(rpc, request, headers).await,
            Protocol::GrpcWeb | Protocol::GrpcWebText => {
                let body = frame(&rpc.encode(request));
                self.grpc_web(protocol == Protocol::GrpcWebText, &rpc.path(), headers, body, Some(rpc)).await
            }
            Protocol::ConnectJson => {
                let headers = headers.clone().with("content-type", "application/json");
                let body = serde_json::to_vec(&request).expect("JSON serializes");
                let raw = self.exchange(false, Method::POST, &rpc.path(), &headers, body).await;
                json_outcome(protocol, raw)
            }
            Protocol::ConnectProto => {
                let headers = headers.clone().with("content-type", "application/proto");
                let raw = self.exchange(false, Method::POST, &rpc.path(), &headers, rpc.encode(request)).await;
                proto_outcome(raw, rpc)
            }
            Protocol::Rest => {
                let (method, path, body) = rest_binding(rpc, request);
                let headers = match body {
                    Some(_) => headers.clone().with("content-type", "application/json"),
                    None => headers.clone(),
                };
                let raw = self.exchange(false, method, &path, &headers, body.unwrap_or_default()).await;
                json_outcome(protocol, raw)
            }
        }
    }

    /// A gRPC-Web POST of `body` (already framed; base64-encoded here for `text`).
    pub async fn grpc_web(
        &self,
        text: bool,
        path: &str,
        headers: &Headers,
        body: Vec<u8>,
        rpc: Option<Rpc>,
    ) -> Outcome {
        let (content_type, body) = if text {
            ("application/grpc-web-text", BASE64.encode(&body).into_bytes())
        } else {
            ("application/grpc-web+proto", body)
        };
        let headers = headers.clone().or_with("content-type", content_type).with("x-grpc-web", "1");
        let raw = self.exchange(false, Method::POST, path, &headers, body).await;
        grpc_web_outcome(text, raw, rpc)
    }

    /// A gRPC-Web POST whose body is sent exactly as given (content type chosen by `text`).
    pub async fn grpc_web_raw(
        &self,
        text: bool,
        path: &str,
        headers: &Headers,
        body: Vec<u8>,
        rpc: Option<Rpc>,
    ) -> Outcome {
        let content_type = if text { "application/grpc-web-text" } else { "application/grpc-web+proto" };
        let headers = headers.clone().with("content-type", content_type).with("x-grpc-web", "1");
        let raw = self.exchange(false, Method::POST, path, &headers, body).await;
        grpc_web_outcome(text, raw, rpc)
    }

    /// A gRPC call over h2c with a body sent exactly as given (for framing errors the generated
    /// client cannot produce).
    pub async fn grpc_raw(&self, path: &str, headers: &Headers, body: Vec<u8>, rpc: Option<Rpc>) -> Outcome {
        let headers = headers.clone().or_with("content-type", "application/grpc").with("te", "trailers");
        let raw = self.exchange(true, Method::POST, path, &headers, body).await;
        assert_eq!(raw.status, 200, "gRPC answers travel over HTTP 200: {raw:?}");
        let fields = if raw.headers.contains_key("grpc-status") { &raw.headers } else { &raw.trailers };
        let (code, message, id, failed_attempts) =
            grpc_status_of(fields).unwrap_or_else(|| panic!("a gRPC answer without grpc-status: {raw:?}"));
        let body = match (code, rpc) {
            (Code::Ok, Some(rpc)) => rpc.decode(&unframe(&raw.body)),
            _ => Value::Null,
        };
        Outcome {
            protocol: Protocol::Grpc,
            http: Some(raw.status),
            headers: raw.headers,
            code,
            id,
            message,
            failed_attempts,
            body,
        }
    }

    async fn tonic_call(&self, rpc: Rpc, request: Value, headers: &Headers) -> Outcome {
        let mut client = SessionServiceClient::new(self.channel.clone());
        let result = match rpc {
            Rpc::CreateSession => {
                client.create_session(tonic_request::<pb::CreateSessionRequest>(request, headers)).await.map(tonic_json)
            }
            Rpc::GetSession => {
                client.get_session(tonic_request::<pb::GetSessionRequest>(request, headers)).await.map(tonic_json)
            }
            Rpc::SetSession => {
                client.set_session(tonic_request::<pb::SetSessionRequest>(request, headers)).await.map(tonic_json)
            }
            Rpc::DeleteSession => {
                client.delete_session(tonic_request::<pb::DeleteSessionRequest>(request, headers)).await.map(tonic_json)
            }
            Rpc::ListSessions => {
                client.list_sessions(tonic_request::<pb::ListSessionsRequest>(request, headers)).await.map(tonic_json)
            }
            Rpc::RegisterPasskey => UserServiceClient::new(self.channel.clone())
                .register_passkey(tonic_request::<user_pb::RegisterPasskeyRequest>(request, headers))
                .await
                .map(tonic_json),
            Rpc::VerifyPasskeyRegistration => UserServiceClient::new(self.channel.clone())
                .verify_passkey_registration(tonic_request::<user_pb::VerifyPasskeyRegistrationRequest>(
                    request, headers,
                ))
                .await
                .map(tonic_json),
        };
        match result {
            Ok((headers, body)) => Outcome {
                protocol: Protocol::Grpc,
                http: None,
                headers,
                code: Code::Ok,
                id: String::new(),
                message: String::new(),
                failed_attempts: None,
                body,
            },
            Err(status) => {
                let (id, failed_attempts) = match rpc::Status::decode(status.details()) {
                    Ok(details) if !status.details().is_empty() => {
                        assert_eq!(details.code, status.code() as i32, "the details' code must match: {status:?}");
                        detail_of(&details)
                    }
                    _ => (String::new(), None),
                };
                Outcome {
                    protocol: Protocol::Grpc,
                    http: None,
                    headers: status.metadata().clone().into_headers(),
                    code: status.code(),
                    id,
                    message: status.message().to_owned(),
                    failed_attempts,
                    body: Value::Null,
                }
            }
        }
    }
}

fn tonic_request<T: DeserializeOwned>(request: Value, headers: &Headers) -> tonic::Request<T> {
    let message = serde_json::from_value(request.clone())
        .unwrap_or_else(|e| panic!("test request {request} is not valid for its message: {e}"));
    let mut request = tonic::Request::new(message);
    for (name, value) in &headers.0 {
        let key = MetadataKey::from_bytes(name.as_bytes()).expect("valid metadata key");
        let value = MetadataValue::try_from(value.as_str()).expect("valid metadata value");
        request.metadata_mut().append(key, value);
    }
    request
}

fn tonic_json<T: Serialize>(response: tonic::Response<T>) -> (HeaderMap, Value) {
    let (metadata, message, _) = response.into_parts();
    (metadata.into_headers(), serde_json::to_value(message).expect("messages serialize to JSON"))
}

/// One gRPC data frame around `message`.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&u32::try_from(message.len()).expect("small message").to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The payload of a body holding exactly one data frame.
fn unframe(body: &[u8]) -> Vec<u8> {
    assert!(body.len() >= 5 && body[0] == 0, "not one data frame: {body:?}");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    assert_eq!(body.len(), 5 + len, "not exactly one data frame");
    body[5..].to_vec()
}

pub fn grpc_web_outcome(text: bool, raw: Raw, rpc: Option<Rpc>) -> Outcome {
    let protocol = if text { Protocol::GrpcWebText } else { Protocol::GrpcWeb };
    let content_type = raw.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let expected = if text { "application/grpc-web-text" } else { "application/grpc-web+proto" };
    assert_eq!(content_type, expected, "[{protocol}] answer content type: {raw:?}");
    let body = if text {
        BASE64.decode(&raw.body).unwrap_or_else(|e| panic!("[{protocol}] answer is not base64 ({e}): {raw:?}"))
    } else {
        raw.body.to_vec()
    };
    // Frames: one flag byte, a big-endian u32 length, the payload; 0x80 marks the trailers.
    let (mut message, mut trailers, mut rest) = (None, None, body.as_slice());
    while !rest.is_empty() {
        assert!(rest.len() >= 5, "[{protocol}] truncated frame header in the answer");
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let payload = rest.get(5..5 + len).unwrap_or_else(|| panic!("[{protocol}] truncated frame in the answer"));
        if rest[0] & 0x80 != 0 {
            assert!(trailers.is_none(), "[{protocol}] two trailer frames");
            trailers = Some(parse_trailer_block(payload));
        } else {
            assert!(trailers.is_none(), "[{protocol}] a data frame after the trailers");
            message = Some(payload.to_vec());
        }
        rest = &rest[5 + len..];
    }
    let trailers = trailers.unwrap_or_else(|| panic!("[{protocol}] no trailer frame: {raw:?}"));
    let (code, status_message, id, failed_attempts) =
        grpc_status_of(&trailers).unwrap_or_else(|| panic!("[{protocol}] trailers without grpc-status"));
    let body = match (code, rpc, message) {
        (Code::Ok, Some(rpc), Some(m)) => rpc.decode(&m),
        (Code::Ok, Some(_), None) => panic!("[{protocol}] success without a message frame"),
        _ => Value::Null,
    };
    Outcome {
        protocol,
        http: Some(raw.status),
        headers: raw.headers,
        code,
        id,
        message: status_message,
        failed_attempts,
        body,
    }
}

/// `name:value\r\n` lines of a gRPC-Web trailer frame.
fn parse_trailer_block(block: &[u8]) -> HeaderMap {
    let mut fields = HeaderMap::new();
    for line in String::from_utf8_lossy(block).split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("bad trailer line `{line}`"));
        fields.append(
            http::HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()).expect("trailer name"),
            http::HeaderValue::from_str(value.trim()).expect("trailer value"),
        );
    }
    fields
}

/// Connect binary answers: the message in protobuf on 200, else Connect's error JSON.
pub fn proto_outcome(raw: Raw, rpc: Rpc) -> Outcome {
    if raw.status != 200 {
        return json_outcome(Protocol::ConnectProto, raw);
    }
    let content_type = raw.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert_eq!(content_type, "application/proto", "[Connect proto] answer content type: {raw:?}");
    Outcome {
        protocol: Protocol::ConnectProto,
        http: Some(raw.status),
        body: rpc.decode(&raw.body),
        headers: raw.headers,
        code: Code::Ok,
        id: String::new(),
        message: String::new(),
        failed_attempts: None,
    }
}

/// Connect and REST answers: the message JSON on 2xx, else the error JSON of that protocol.
pub fn json_outcome(protocol: Protocol, raw: Raw) -> Outcome {
    let body: Value = serde_json::from_slice(&raw.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw.body).into_owned()));
    let mut outcome = Outcome {
        protocol,
        http: Some(raw.status),
        headers: raw.headers,
        code: Code::Ok,
        id: String::new(),
        message: String::new(),
        failed_attempts: None,
        body,
    };
    if (200..300).contains(&raw.status) {
        let content_type = outcome.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(content_type, "application/json", "{outcome:?}");
        return outcome;
    }
    let Value::Object(error) = &outcome.body else {
        // Not an error body at all: keep the text for the assertion message.
        outcome.code = Code::Unknown;
        outcome.message = outcome.body.to_string();
        return outcome;
    };
    outcome.message = error.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
    let detail = error.get("details").and_then(Value::as_array).and_then(|d| d.first()).cloned();
    match protocol {
        Protocol::Rest => {
            outcome.code = Code::from_i32(error.get("code").and_then(Value::as_i64).unwrap_or(-1) as i32);
            if let Some(Value::Object(detail)) = detail {
                let type_url = detail.get("@type").and_then(Value::as_str).unwrap_or_default();
                assert!(
                    type_url == ERROR_DETAIL_TYPE || type_url == CREDENTIALS_CHECK_ERROR_TYPE,
                    "REST detail @type: {detail:?}"
                );
                outcome.id = detail.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                outcome.failed_attempts = detail.get("failedAttempts").and_then(Value::as_i64).map(|n| n as i32);
            }
        }
        _ => {
            let name = error.get("code").and_then(Value::as_str).unwrap_or_default();
            outcome.code = connect_code(name).unwrap_or(Code::Unknown);
            if let Some(Value::Object(detail)) = detail {
                let (id, failed_attempts) = connect_detail(&detail);
                outcome.id = id;
                outcome.failed_attempts = failed_attempts;
            }
        }
    }
    outcome
}

/// A Connect error detail: `{"type": "zitadel.v1.ErrorDetail", "value": "<base64 proto>"}`.
fn connect_detail(detail: &Map<String, Value>) -> (String, Option<i32>) {
    let type_name = detail.get("type").and_then(Value::as_str).unwrap_or_default();
    let value = detail.get("value").and_then(Value::as_str).unwrap_or_default();
    let bytes = BASE64.decode(value).unwrap_or_else(|e| panic!("Connect detail value is not base64 ({e})"));
    let any = pbjson_types::Any { type_url: format!("type.googleapis.com/{type_name}"), value: bytes.into() };
    detail_of(&rpc::Status { code: 0, message: String::new(), details: vec![any] })
}

/// The `google.api.http` binding of each RPC: method, path (session id escaped into it, GET's
/// token into the query) and the JSON body, `None` when nothing is left for it.
pub fn rest_binding(rpc: Rpc, request: Value) -> (Method, String, Option<Vec<u8>>) {
    let Value::Object(mut fields) = request else { panic!("a REST request must be a JSON object") };
    let mut take = |name: &str| fields.remove(name).and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let (method, path) = match rpc {
        Rpc::CreateSession => (Method::POST, "/v2/sessions".to_owned()),
        Rpc::ListSessions => (Method::POST, "/v2/sessions/search".to_owned()),
        Rpc::GetSession => {
            let id = take("sessionId");
            let token = take("sessionToken");
            assert!(fields.is_empty(), "GetSession on REST takes only sessionId and sessionToken");
            let query = if token.is_empty() { String::new() } else { format!("?sessionToken={}", escape(&token)) };
            return (Method::GET, format!("/v2/sessions/{}{query}", escape(&id)), None);
        }
        Rpc::SetSession => (Method::PATCH, format!("/v2/sessions/{}", escape(&take("sessionId")))),
        Rpc::DeleteSession => (Method::DELETE, format!("/v2/sessions/{}", escape(&take("sessionId")))),
        Rpc::RegisterPasskey => (Method::POST, format!("/v2/users/{}/passkeys", escape(&take("userId")))),
        Rpc::VerifyPasskeyRegistration => {
            let user = take("userId");
            (Method::POST, format!("/v2/users/{}/passkeys/{}", escape(&user), escape(&take("passkeyId"))))
        }
    };
    // An empty DELETE goes out as curl sends it: no body, no content type.
    let body = (!(fields.is_empty() && method == Method::DELETE))
        .then(|| serde_json::to_vec(&Value::Object(fields)).expect("JSON serializes"));
    (method, path, body)
}

/// `{"user": {"userId": id}}` checks, the most common request part.
pub fn user_check(user_id: &str) -> Value {
    json!({ "user": { "userId": user_id } })
}
