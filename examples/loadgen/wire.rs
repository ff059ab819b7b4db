//! One call in each wire format: how the request is written and when its answer counts as a
//! success (HTTP status and grpc-status, or the Connect/REST status and body).

use std::{fmt, str::FromStr};

use bytes::{Buf, Bytes};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use prost::Message;
use sessiond::{
    proto::session::{self as pb, check_user},
    transport::frame,
};

const SERVICE_PATH: &str = "/zitadel.session.v2.SessionService";

/// The wire format of an arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Grpc,
    GrpcWeb,
    ConnectJson,
    RestJson,
}

impl Protocol {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
            Self::ConnectJson => "connect",
            Self::RestJson => "rest",
        }
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "grpc" => Self::Grpc,
            "grpc-web" => Self::GrpcWeb,
            "connect" => Self::ConnectJson,
            "rest" => Self::RestJson,
            other => return Err(format!("unknown protocol `{other}` (grpc, grpc-web, connect, rest)")),
        })
    }
}

/// The RPC an arm calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    Delete,
    Create,
    Get,
}

impl Rpc {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Create => "create",
            Self::Get => "get",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Self::Delete => "DeleteSession",
            Self::Create => "CreateSession",
            Self::Get => "GetSession",
        }
    }
}

impl FromStr for Rpc {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "delete" => Self::Delete,
            "create" => Self::Create,
            "get" => Self::Get,
            other => return Err(format!("unknown rpc `{other}` (delete, create, get)")),
        })
    }
}

/// What a call needs besides the protocol and RPC.
#[derive(Debug, Clone)]
pub(crate) struct CallInput<'a> {
    /// `host:port`, for `:authority` / `Host`.
    pub(crate) authority: &'a str,
    /// `Bearer ...` header value.
    pub(crate) authorization: &'a http::HeaderValue,
    /// The session to delete or read; unused by Create.
    pub(crate) session_id: &'a str,
    /// The login name CreateSession checks.
    pub(crate) login_name: &'a str,
    /// HTTP/2: absolute URI (`:scheme`, `:authority`); HTTP/1.1: origin form and `Host`.
    pub(crate) http2: bool,
}

/// The protobuf request message of `rpc`.
pub(crate) fn proto_request(rpc: Rpc, input: &CallInput<'_>) -> Vec<u8> {
    match rpc {
        Rpc::Delete => {
            pb::DeleteSessionRequest { session_id: input.session_id.to_owned(), session_token: None }.encode_to_vec()
        }
        Rpc::Get => {
            pb::GetSessionRequest { session_id: input.session_id.to_owned(), session_token: None }.encode_to_vec()
        }
        Rpc::Create => pb::CreateSessionRequest {
            checks: Some(pb::Checks {
                user: Some(pb::CheckUser { search: Some(check_user::Search::LoginName(input.login_name.to_owned())) }),
                ..Default::default()
            }),
            lifetime: Some(pbjson_types::Duration { seconds: 3600, nanos: 0 }),
            ..Default::default()
        }
        .encode_to_vec(),
    }
}

/// The proto3-JSON request message of `rpc`, as Connect and REST clients send it.
fn json_request(rpc: Rpc, input: &CallInput<'_>) -> String {
    match rpc {
        Rpc::Delete | Rpc::Get => format!(r#"{{"sessionId":"{}"}}"#, input.session_id),
        Rpc::Create => {
            format!(r#"{{"checks":{{"user":{{"loginName":"{}"}}}},"lifetime":"3600s"}}"#, input.login_name)
        }
    }
}

/// The HTTP request of one call.
pub(crate) fn request(protocol: Protocol, rpc: Rpc, input: &CallInput<'_>) -> Request<Full<Bytes>> {
    let (method, path, content_type, body): (Method, String, Option<&str>, Bytes) = match protocol {
        Protocol::Grpc | Protocol::GrpcWeb => {
            let content_type =
                if protocol == Protocol::Grpc { "application/grpc" } else { "application/grpc-web+proto" };
            let body = frame::encode_message(&proto_request(rpc, input));
            (Method::POST, format!("{SERVICE_PATH}/{}", rpc.method()), Some(content_type), body)
        }
        Protocol::ConnectJson => (
            Method::POST,
            format!("{SERVICE_PATH}/{}", rpc.method()),
            Some("application/json"),
            Bytes::from(json_request(rpc, input)),
        ),
        // The bindings of session_service.proto; Delete and Get as ZITADEL's REST users send them.
        Protocol::RestJson => match rpc {
            Rpc::Delete => (Method::DELETE, format!("/v2/sessions/{}", input.session_id), None, Bytes::new()),
            Rpc::Get => (Method::GET, format!("/v2/sessions/{}", input.session_id), None, Bytes::new()),
            Rpc::Create => (
                Method::POST,
                "/v2/sessions".to_owned(),
                Some("application/json"),
                Bytes::from(json_request(rpc, input)),
            ),
        },
    };
    let uri = if input.http2 { format!("http://{}{path}", input.authority) } else { path };
    let mut builder = Request::builder().method(method).uri(uri);
    if !input.http2 {
        builder = builder.header(header::HOST, input.authority);
    }
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder = match protocol {
        Protocol::Grpc => builder.header(header::TE, "trailers"),
        Protocol::GrpcWeb => builder.header("x-grpc-web", "1").header(header::ACCEPT, "application/grpc-web+proto"),
        Protocol::ConnectJson => builder.header("connect-protocol-version", "1"),
        Protocol::RestJson => builder,
    };
    builder
        .header(header::AUTHORIZATION, input.authorization.clone())
        .body(Full::new(body))
        .expect("benchmark requests are well-formed")
}

/// Why a call did not count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Failure {
    /// Connection or protocol error before an answer.
    Transport(String),
    /// An HTTP status other than the success status.
    Http(u16),
    /// gRPC or gRPC-Web answered with a non-zero (or no) grpc-status.
    GrpcStatus(String),
    /// A 2xx answer whose body is not the success message.
    Body(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "transport: {e}"),
            Self::Http(s) => write!(f, "http {s}"),
            Self::GrpcStatus(s) => write!(f, "grpc-status {s}"),
            Self::Body(s) => write!(f, "body: {s}"),
        }
    }
}

/// Reads the whole answer and decides whether the call succeeded.
pub(crate) async fn check<B>(protocol: Protocol, rpc: Rpc, response: http::Response<B>) -> Result<(), Failure>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: fmt::Display,
{
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(|e| Failure::Transport(e.to_string()))?;
    let trailers = collected.trailers().cloned();
    let body = collected.to_bytes();
    let expected = match (protocol, rpc) {
        (Protocol::RestJson, Rpc::Create) => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    if parts.status != expected {
        return Err(Failure::Http(parts.status.as_u16()));
    }
    match protocol {
        Protocol::Grpc => {
            // Trailers-only answers carry the status in the headers.
            let status = trailers.as_ref().and_then(grpc_status).or_else(|| grpc_status(&parts.headers));
            match status.as_deref() {
                Some("0") => {}
                Some(other) => return Err(Failure::GrpcStatus(other.to_owned())),
                None => return Err(Failure::GrpcStatus("missing".into())),
            }
            if body.len() < frame::HEADER_LEN {
                return Err(Failure::Body("no message frame".into()));
            }
            Ok(())
        }
        Protocol::GrpcWeb => grpc_web_ok(body),
        Protocol::ConnectJson | Protocol::RestJson => {
            // The success message, not an error body: its first field is the one each RPC answers.
            let key: &[u8] = match rpc {
                Rpc::Delete => br#"{"details""#,
                Rpc::Create => br#"{"details""#,
                Rpc::Get => br#"{"session""#,
            };
            if !body.starts_with(key) || !body.ends_with(b"}") {
                return Err(Failure::Body(String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned()));
            }
            if rpc == Rpc::Create && !body.windows(12).any(|w| w == br#""sessionId":"#) {
                return Err(Failure::Body("no sessionId".into()));
            }
            Ok(())
        }
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<String> {
    headers.get("grpc-status").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A gRPC-Web body: a message frame, then a trailer frame whose `grpc-status` is 0.
fn grpc_web_ok(mut body: Bytes) -> Result<(), Failure> {
    let mut saw_message = false;
    while body.remaining() >= frame::HEADER_LEN {
        let flags = body.get_u8();
        let len = body.get_u32() as usize;
        if body.remaining() < len {
            return Err(Failure::Body("truncated gRPC-Web frame".into()));
        }
        let payload = body.split_to(len);
        if flags & 0x80 == 0 {
            saw_message = true;
            continue;
        }
        let text = String::from_utf8_lossy(&payload);
        let status = text.split("\r\n").find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("grpc-status").then(|| value.trim().to_owned())
        });
        return match status.as_deref() {
            Some("0") if saw_message => Ok(()),
            Some("0") => Err(Failure::Body("no message frame".into())),
            Some(other) => Err(Failure::GrpcStatus(other.to_owned())),
            None => Err(Failure::GrpcStatus("missing".into())),
        };
    }
    Err(Failure::Body("no trailer frame".into()))
}
