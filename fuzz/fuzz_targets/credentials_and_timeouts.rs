//! `authorization` headers (any number, NUL-separated) and the two deadline headers.
#![no_main]

use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use sessiond::transport::{auth, limits};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    let fields: Vec<&[u8]> = data.split(|b| *b == 0).collect();
    let (timeouts, credentials) = fields.split_at(fields.len().min(2));
    for (name, value) in ["grpc-timeout", "connect-timeout-ms"].iter().zip(timeouts) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(*name, value);
        }
    }
    for value in credentials {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(AUTHORIZATION, value);
        }
    }
    let _ = auth::bearer(&headers);
    let _ = limits::parse_deadline(&headers);
});
