//! The generated tonic `UserService`, of which sessiond serves passkey registration: protobuf to
//! domain calls and back. Every wire format reaches it through tonic's generated server, behind
//! the same token lookup as the session service.

use tonic::{Request, Response, Status};

use super::{caller, convert};
use crate::{
    domain::passkey::{Attachment, Passkeys, RegisterPasskey, VerifyPasskey},
    proto::user::{self as pb, user_service_server::UserService},
};

/// The `UserService` handler over the domain.
#[derive(Debug, Clone)]
pub struct UserHandler {
    passkeys: Passkeys,
}

impl UserHandler {
    pub fn new(passkeys: Passkeys) -> Self {
        Self { passkeys }
    }
}

#[tonic::async_trait]
impl UserService for UserHandler {
    async fn register_passkey(
        &self,
        request: Request<pb::RegisterPasskeyRequest>,
    ) -> Result<Response<pb::RegisterPasskeyResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let attachment = match r.authenticator() {
            pb::PasskeyAuthenticator::Unspecified => Attachment::Any,
            pb::PasskeyAuthenticator::Platform => Attachment::Platform,
            pb::PasskeyAuthenticator::CrossPlatform => Attachment::CrossPlatform,
        };
        let input = RegisterPasskey { user_id: r.user_id, domain: r.domain, attachment, with_code: r.code.is_some() };
        let registration = self.passkeys.register(&caller, input).await?;
        Ok(Response::new(pb::RegisterPasskeyResponse {
            details: Some(convert::details(&registration.details)),
            passkey_id: registration.passkey_id,
            public_key_credential_creation_options: Some(convert::json_struct(registration.options)?),
        }))
    }

    async fn verify_passkey_registration(
        &self,
        request: Request<pb::VerifyPasskeyRegistrationRequest>,
    ) -> Result<Response<pb::VerifyPasskeyRegistrationResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let credential = match r.public_key_credential {
            Some(credential) => convert::struct_json(credential)?,
            None => serde_json::Value::Null,
        };
        let input = VerifyPasskey { user_id: r.user_id, passkey_id: r.passkey_id, credential, name: r.passkey_name };
        let details = self.passkeys.verify(&caller, input).await?;
        Ok(Response::new(pb::VerifyPasskeyRegistrationResponse { details: Some(convert::details(&details)) }))
    }
}
