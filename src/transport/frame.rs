//! gRPC length-prefixed framing, shared by gRPC and gRPC-Web, and the base64 layer of
//! `application/grpc-web-text`.

use base64::{
    Engine,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::STANDARD},
};
use bytes::{BufMut, Bytes, BytesMut};

/// Size of the frame header: one flag byte and a big-endian u32 length.
pub const HEADER_LEN: usize = 5;
/// Flag bit marking a gRPC-Web trailer frame.
const TRAILER_FLAG: u8 = 0x80;
const COMPRESSED_FLAG: u8 = 0x01;

/// Accepts base64 with or without padding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a request body holds no usable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The body is not one well-formed frame.
    Malformed(String),
    /// A well-formed frame uses a feature we do not offer (compression).
    Unsupported(String),
}

impl From<String> for FrameError {
    fn from(message: String) -> Self {
        Self::Malformed(message)
    }
}

impl FrameError {
    pub fn message(&self) -> &str {
        match self {
            Self::Malformed(m) | Self::Unsupported(m) => m,
        }
    }
}

/// The single message of a unary request body, or why there is none. A compressed message is
/// well formed only when the call declares its `grpc-encoding` (`encoded`).
pub fn unary_message(body: &Bytes, encoded: bool) -> Result<Bytes, FrameError> {
    if body.is_empty() {
        return Err(FrameError::Malformed("the request body holds no gRPC message frame".into()));
    }
    if body.len() < HEADER_LEN {
        return Err(format!("truncated gRPC frame: {} bytes, the header alone needs {HEADER_LEN}", body.len()).into());
    }
    let flags = body[0];
    if flags & TRAILER_FLAG != 0 {
        return Err(FrameError::Malformed("a request must not carry a trailer frame".into()));
    }
    if flags & COMPRESSED_FLAG != 0 && !encoded {
        return Err(FrameError::Unsupported(
            "the message is compressed but the call names no grpc-encoding: name one the server accepts".into(),
        ));
    }
    if flags & !COMPRESSED_FLAG != 0 {
        return Err(format!("unknown gRPC frame flags {flags:#04x}").into());
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let available = body.len() - HEADER_LEN;
    if available < len {
        return Err(format!("truncated gRPC frame: the header announces {len} bytes, {available} arrived").into());
    }
    if available > len {
        return Err(FrameError::Malformed("a unary request must hold exactly one message frame".into()));
    }
    Ok(body.slice(HEADER_LEN..))
}

/// One data frame around `message`.
pub fn encode_message(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// A gRPC-Web trailer frame holding `trailers` as HTTP/1-style header lines.
pub fn encode_trailers(trailers: &http::HeaderMap) -> Bytes {
    let mut block = Vec::new();
    for (name, value) in trailers {
        block.extend_from_slice(name.as_str().as_bytes());
        block.extend_from_slice(b":");
        block.extend_from_slice(value.as_bytes());
        block.extend_from_slice(b"\r\n");
    }
    let mut out = BytesMut::with_capacity(HEADER_LEN + block.len());
    out.put_u8(TRAILER_FLAG);
    out.put_u32(block.len() as u32);
    out.put_slice(&block);
    out.freeze()
}

/// Decodes a `grpc-web-text` body: base64, possibly several padded chunks one after another
/// (each chunk a client flushed separately). Whitespace between chunks is ignored.
pub fn decode_base64_chunks(body: &[u8]) -> Result<Bytes, String> {
    let mut out = Vec::with_capacity(body.len() / 4 * 3);
    let clean: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut rest = clean.as_slice();
    while !rest.is_empty() {
        // A chunk ends after its padding, or at the end of the body.
        let end = match rest.iter().position(|&b| b == b'=') {
            Some(first_pad) => {
                let pads = rest[first_pad..].iter().take_while(|&&b| b == b'=').count();
                first_pad + pads
            }
            None => rest.len(),
        };
        let chunk = &rest[..end];
        LENIENT.decode_vec(chunk, &mut out).map_err(|e| format!("the grpc-web-text body is not valid base64: {e}"))?;
        rest = &rest[end..];
    }
    Ok(out.into())
}

/// Whether a gRPC-Web response body already ends in a trailer frame.
pub fn has_trailer_frame(mut body: &[u8]) -> bool {
    while body.len() >= HEADER_LEN {
        if body[0] & TRAILER_FLAG != 0 {
            return true;
        }
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        body = body.get(HEADER_LEN + len..).unwrap_or_default();
    }
    false
}

/// The `grpc-status` in the body's trailer frame, if it has one (for the access log and metrics).
pub fn trailer_code(mut body: &[u8]) -> Option<tonic::Code> {
    while body.len() >= HEADER_LEN {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let payload = body.get(HEADER_LEN..HEADER_LEN + len)?;
        if body[0] & TRAILER_FLAG != 0 {
            let block = std::str::from_utf8(payload).ok()?;
            let value = block.split("\r\n").find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim().eq_ignore_ascii_case("grpc-status").then(|| value.trim().parse::<i32>().ok())?
            })?;
            return Some(tonic::Code::from_i32(value));
        }
        body = body.get(HEADER_LEN + len..).unwrap_or_default();
    }
    None
}

pub fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailer_frames_code_is_read_back() {
        let mut fields = http::HeaderMap::new();
        fields.insert("grpc-status", http::HeaderValue::from_static("5"));
        fields.insert("grpc-message", http::HeaderValue::from_static("gone"));
        let mut body = encode_message(b"hello").to_vec();
        assert_eq!(trailer_code(&body), None);
        body.extend_from_slice(&encode_trailers(&fields));
        assert_eq!(trailer_code(&body), Some(tonic::Code::NotFound));
    }

    #[test]
    fn one_frame_round_trips() {
        let framed = encode_message(b"hello");
        assert_eq!(unary_message(&framed, false).unwrap(), Bytes::from_static(b"hello"));
    }

    #[test]
    fn malformed_frames_are_named() {
        let error = |body: &'static [u8]| unary_message(&Bytes::from_static(body), false).unwrap_err();
        assert!(error(&[]).message().contains("no gRPC message"));
        assert!(error(&[0, 0, 0]).message().contains("truncated"));
        assert!(error(&[0, 0, 0, 0, 9, 1]).message().contains("announces 9"));
        assert!(matches!(error(&[1, 0, 0, 0, 0]), FrameError::Unsupported(m) if m.contains("compressed")));
        assert!(unary_message(&Bytes::from_static(&[1, 0, 0, 0, 0]), true).is_ok());
        assert!(error(&[0, 0, 0, 0, 0, 0]).message().contains("exactly one"));
    }

    #[test]
    fn concatenated_padded_base64_chunks_decode() {
        let joined = format!("{}{}", STANDARD.encode(b"ab"), STANDARD.encode(b"cde"));
        assert_eq!(decode_base64_chunks(joined.as_bytes()).unwrap(), Bytes::from_static(b"abcde"));
        assert!(decode_base64_chunks(b"@@@@").is_err());
    }
}
