//! The generated tonic `SessionService`, implemented once: it converts protobuf to domain calls
//! and back, and maps domain errors to statuses. Every wire format reaches this one handler
//! through tonic's generated server.

pub mod answers;
pub mod auth;
pub mod codec;
pub mod convert;
pub mod status;
pub mod users;

use prost::Message;
use tonic::{Request, Response, Status};

use self::answers::AnswerBudget;

use crate::{
    domain::{
        Caller, Error, Principal,
        session::{CreateSession, Sessions, SetSession},
        token::Secret,
    },
    proto::{
        session::{self as pb, session_service_server::SessionService},
        zitadel::object::v2::ListDetails,
    },
};

/// The `SessionService` handler over the domain.
#[derive(Debug, Clone)]
pub struct SessionHandler {
    sessions: Sessions,
    answers: AnswerBudget,
}

impl SessionHandler {
    pub fn new(sessions: Sessions) -> Self {
        Self { sessions, answers: AnswerBudget::default() }
    }

    /// Large answers share `answers` until delivered (see `answers`).
    pub fn with_answer_budget(self, answers: AnswerBudget) -> Self {
        Self { answers, ..self }
    }
}

/// The caller the transport authenticated and put into the request's extensions.
fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Error::unauthenticated("AUTH-MissingCredentials", "the request carries no bearer token").into())
}

/// Who calls a hot RPC: the caller the transport authenticated, or the API token the call's own
/// store step checks (`auth::Authenticated` leaves it for the call).
fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    match request.extensions().get::<Principal>() {
        Some(principal) => Ok(principal.clone()),
        None => caller(request).map(Principal::Caller),
    }
}

/// An empty string is an absent value (proto3).
fn present(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

#[tonic::async_trait]
impl SessionService for SessionHandler {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.into_inner();
        let challenges = convert::challenges(r.challenges)?;
        let input = CreateSession {
            challenges,
            checks: convert::checks(r.checks)?,
            metadata: convert::metadata(r.metadata),
            user_agent: convert::user_agent(r.user_agent),
            lifetime: convert::lifetime(r.lifetime)?,
        };
        let issued = self.sessions.create_as(&principal, input).await?;
        Ok(Response::new(pb::CreateSessionResponse {
            details: Some(convert::details(&issued.details)),
            session_id: issued.session_id,
            session_token: issued.token.map(|t| t.expose().to_owned()).unwrap_or_default(),
            challenges: convert::returned_challenges(issued.codes)?,
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.into_inner();
        let token = present(r.session_token);
        let session = self.sessions.get_as(&principal, &r.session_id, token.as_deref()).await?;
        Ok(Response::new(pb::GetSessionResponse { session: Some(convert::session(&session)) }))
    }

    async fn set_session(
        &self,
        request: Request<pb::SetSessionRequest>,
    ) -> Result<Response<pb::SetSessionResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let challenges = convert::challenges(r.challenges)?;
        let input = SetSession {
            challenges,
            session_id: r.session_id,
            token: present(Some(r.session_token)).map(Secret::new),
            checks: convert::checks(r.checks)?,
            metadata: convert::metadata(r.metadata),
            lifetime: convert::lifetime(r.lifetime)?,
        };
        let issued = self.sessions.set(&caller, input).await?;
        Ok(Response::new(pb::SetSessionResponse {
            details: Some(convert::details(&issued.details)),
            session_token: issued.token.map(|t| t.expose().to_owned()).unwrap_or_default(),
            challenges: convert::returned_challenges(issued.codes)?,
        }))
    }

    async fn delete_session(
        &self,
        request: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.into_inner();
        let token = present(r.session_token);
        let details = self.sessions.delete_as(&principal, &r.session_id, token.as_deref()).await?;
        Ok(Response::new(pb::DeleteSessionResponse { details: Some(convert::details(&details)) }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let caller = caller(&request)?;
        let input = convert::list_request(request.into_inner(), &caller.user_id)?;
        let page = self.sessions.list(&caller, input).await?;
        let answer = pb::ListSessionsResponse {
            details: Some(ListDetails {
                total_result: page.total,
                processed_sequence: 0,
                timestamp: Some(convert::timestamp(page.timestamp)),
            }),
            sessions: page.sessions.iter().map(convert::session).collect(),
        };
        drop(page);
        let held = self.answers.hold(answer.encoded_len()).await?;
        let mut response = Response::new(answer);
        if let Some(held) = held {
            response.extensions_mut().insert(held);
        }
        Ok(response)
    }
}
