//! Ties a large answer's share of the budget (`service::answers`) to its body: the share goes
//! back when the body is dropped, that is once hyper has delivered it or its stream or
//! connection is gone, however long a client that never grants flow-control window keeps it.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::Response;
use http_body::{Frame, SizeHint};
use tonic::{Status, body::Body};

use crate::service::answers::HeldAnswer;

/// Moves a held share from the response's extensions into its body.
pub fn tie(mut response: Response<Body>) -> Response<Body> {
    match response.extensions_mut().remove::<HeldAnswer>() {
        Some(held) => response.map(|body| Body::new(Holding { body, _held: held })),
        None => response,
    }
}

/// A body that holds a share until it is dropped.
struct Holding {
    body: Body,
    _held: HeldAnswer,
}

impl http_body::Body for Holding {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
