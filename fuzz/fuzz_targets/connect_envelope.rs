//! Connect's envelope: path, content type, timeout and content-coding headers and the body they
//! describe (NUL-separated): the protocol decision, the deadline, and gzip bodies.
#![no_main]

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sessiond::transport::{Protocol, limits, transcode};

const HEADERS: [&str; 5] = ["content-type", "connect-timeout-ms", "grpc-timeout", "content-encoding", "accept-encoding"];

fuzz_target!(|data: &[u8]| {
    let mut fields = data.splitn(HEADERS.len() + 2, |b| *b == 0);
    let Some(path) = fields.next().and_then(|p| std::str::from_utf8(p).ok()) else { return };
    let mut headers = HeaderMap::new();
    for name in HEADERS {
        let Some(value) = fields.next() else { break };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }
    let body = Bytes::copy_from_slice(fields.next().unwrap_or_default());
    let _ = Protocol::of(&headers, path);
    let _ = limits::parse_deadline(&headers);
    let _ = transcode::accepts_gzip(&headers);
    let _ = transcode::decoded_body(&headers, body, 64 * 1024);
});
