//! The gRPC-Web text normalizer (base64 in padded chunks) and the unary frame check behind it.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sessiond::transport::frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = frame::decode_base64_chunks(data) {
        let _ = frame::unary_message(&decoded, false);
        let _ = frame::has_trailer_frame(&decoded);
    }
    let raw = Bytes::copy_from_slice(data);
    let _ = frame::unary_message(&raw, data.first().is_some_and(|b| b & 1 == 1));
});
