//! Domain errors become gRPC statuses here, in one exhaustive match, each carrying a
//! `google.rpc.Status` with one `zitadel.v1.ErrorDetail` (or `CredentialsCheckError`) in
//! `grpc-status-details-bin`. Every other protocol derives its answer from this status.

use prost::Message;
use tonic::{Code, Status};

use crate::{
    domain::{Error, ErrorClass, error::CredentialsFailure},
    proto::{
        google::rpc,
        zitadel::v1::{CredentialsCheckError, ErrorDetail},
    },
};

pub const ERROR_DETAIL_TYPE: &str = "type.googleapis.com/zitadel.v1.ErrorDetail";
pub const CREDENTIALS_CHECK_ERROR_TYPE: &str = "type.googleapis.com/zitadel.v1.CredentialsCheckError";

/// The one mapping from error class to gRPC code.
pub fn code_of(class: ErrorClass) -> Code {
    match class {
        ErrorClass::Unauthenticated => Code::Unauthenticated,
        ErrorClass::InvalidArgument => Code::InvalidArgument,
        ErrorClass::NotFound => Code::NotFound,
        ErrorClass::PermissionDenied => Code::PermissionDenied,
        ErrorClass::FailedPrecondition => Code::FailedPrecondition,
        ErrorClass::AlreadyExists => Code::AlreadyExists,
        ErrorClass::Aborted => Code::Aborted,
        ErrorClass::Unimplemented => Code::Unimplemented,
        ErrorClass::Unavailable => Code::Unavailable,
        ErrorClass::ResourceExhausted => Code::ResourceExhausted,
        ErrorClass::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorClass::Cancelled => Code::Cancelled,
        ErrorClass::Internal => Code::Internal,
    }
}

/// A failure the client cannot act on (a bug, a broken invariant): the cause is logged once,
/// bounded; the client gets the generic `internal error (INTERNAL)` every protocol renders alike.
pub fn internal(cause: impl std::fmt::Display) -> Status {
    Error::internal(cause).into()
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        status_from_parts(e.class, e.id, &e.message, e.credentials)
    }
}

/// A status with its detail, as every error on every protocol carries it. The message ends with
/// the id in parentheses, as ZITADEL's do.
pub fn status_from_parts(
    class: ErrorClass,
    id: &str,
    message: &str,
    credentials: Option<CredentialsFailure>,
) -> Status {
    with_detail(code_of(class), id, message, credentials)
}

/// A status of `code` carrying one `ErrorDetail`: what the edge raises before any handler runs
/// (routing, framing, limits, deadlines), so that those refusals look like every other error.
pub fn error_status(code: Code, id: &str, message: &str) -> Status {
    with_detail(code, id, message, None)
}

fn with_detail(code: Code, id: &str, message: &str, credentials: Option<CredentialsFailure>) -> Status {
    let full_message = format!("{message} ({id})");
    let detail = match credentials {
        Some(CredentialsFailure { failed_attempts }) => pbjson_types::Any {
            type_url: CREDENTIALS_CHECK_ERROR_TYPE.into(),
            value: CredentialsCheckError { id: id.into(), message: message.into(), failed_attempts }
                .encode_to_vec()
                .into(),
        },
        None => pbjson_types::Any {
            type_url: ERROR_DETAIL_TYPE.into(),
            value: ErrorDetail { id: id.into(), message: message.into() }.encode_to_vec().into(),
        },
    };
    let body = rpc::Status { code: code as i32, message: full_message.clone(), details: vec![detail] };
    Status::with_details(code, full_message, body.encode_to_vec().into())
}
