//! Who may read, change and terminate a session: pure decisions over the caller, the session and
//! the token the request presented. A presented token always decides.

use super::{Caller, Error, Permission, Result, session::Session};

fn token_decides(session: &Session, token: Option<&str>) -> Option<Result<()>> {
    token.map(|token| {
        if session.token_hash.matches(token) {
            Ok(())
        } else {
            Err(Error::permission_denied("SESSION-TokenInvalid", "the session token is invalid"))
        }
    })
}

fn own(caller: &Caller, session: &Session) -> bool {
    session.user_id() == Some(caller.user_id.as_str())
}

fn denied(action: &str) -> Error {
    Error::permission_denied("SESSION-PermissionDenied", format!("the caller may not {action} this session"))
}

/// Get (and what List shows): the session's user, a `session.read` holder, or the current token.
pub fn may_read(caller: &Caller, session: &Session, token: Option<&str>) -> Result<()> {
    token_decides(session, token).unwrap_or_else(|| {
        (own(caller, session) || caller.may(Permission::SessionRead)).then_some(()).ok_or_else(|| denied("read"))
    })
}

/// Set: the current token or `session.write`.
pub fn may_change(caller: &Caller, session: &Session, token: Option<&str>) -> Result<()> {
    token_decides(session, token)
        .unwrap_or_else(|| caller.may(Permission::SessionWrite).then_some(()).ok_or_else(|| denied("change")))
}

/// Delete: the session's user, a `session.delete` holder, or the current token.
pub fn may_delete(caller: &Caller, session: &Session, token: Option<&str>) -> Result<()> {
    token_decides(session, token).unwrap_or_else(|| {
        (own(caller, session) || caller.may(Permission::SessionDelete)).then_some(()).ok_or_else(|| denied("terminate"))
    })
}

/// Create: `session.write`.
pub fn may_create(caller: &Caller) -> Result<()> {
    if caller.may(Permission::SessionWrite) {
        Ok(())
    } else {
        Err(Error::permission_denied(
            "SESSION-PermissionDenied",
            "creating sessions needs the session.write permission",
        ))
    }
}
