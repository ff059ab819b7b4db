//! The protobuf codec for the generated service: prost's, except that bytes which do not decode
//! as the request message are the caller's mistake (INVALID_ARGUMENT with an `ErrorDetail`), not
//! an INTERNAL error as tonic-prost reports them.

use std::marker::PhantomData;

use prost::Message;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstDecoder, ProstEncoder};

use super::status::status_from_parts;
use crate::domain::ErrorClass;

/// The Session API's messages are a few hundred bytes: a buffer of 1 KiB (tonic's default is
/// 8 KiB, allocated and freed on every call) grows for the rare larger one.
fn buffers() -> BufferSettings {
    BufferSettings::new(1024, 32 * 1024)
}

#[derive(Debug)]
pub struct ProtoCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(ProstDecoder::new(buffers()))
    }
}

#[derive(Debug)]
pub struct StrictDecoder<U>(ProstDecoder<U>);

/// The caller's request bytes are not the request message.
pub fn invalid_protobuf(why: &str) -> Status {
    status_from_parts(
        ErrorClass::InvalidArgument,
        "REQUEST-InvalidProtobuf",
        &format!("the request message is not valid protobuf: {why}"),
        None,
    )
}

impl<U: Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|e| invalid_protobuf(e.message()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
