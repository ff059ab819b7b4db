//! What both backends share: the parts of a session kept as one JSON document (factors, metadata,
//! user agent), the history's rows, and SQL comparison operators.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};

use super::{StoreError, StoreResult};
use crate::domain::{
    Timestamp,
    otp::{OtpChallenges, OtpMethod},
    session::{Change, Factors, HistoryEntry, PasskeyChallenge, Session, TimeComparison, UserAgent},
    user::LockoutCounter,
};

#[derive(Serialize, Deserialize)]
struct SessionDocument {
    #[serde(default)]
    factors: Factors,
    /// Values as base64: JSON has no bytes.
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    user_agent: UserAgent,
    /// One-time codes issued and not used yet (salted hashes, never the codes).
    #[serde(default, skip_serializing_if = "OtpChallenges::is_empty")]
    otp_challenges: OtpChallenges,
    /// The open passkey challenge (sealed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passkey_challenge: Option<PasskeyChallenge>,
}

pub(crate) fn encode_state(session: &Session) -> String {
    let document = SessionDocument {
        factors: session.factors.clone(),
        metadata: session.metadata.iter().map(|(k, v)| (k.clone(), STANDARD.encode(v))).collect(),
        user_agent: session.user_agent.clone(),
        otp_challenges: session.otp_challenges.clone(),
        passkey_challenge: session.passkey_challenge.clone(),
    };
    serde_json::to_string(&document).expect("session documents always serialize")
}

/// Fills the parts of `session` that the `state` document holds.
pub(crate) fn decode_state_into(session: &mut Session, json: &str) -> StoreResult<()> {
    let document: SessionDocument =
        serde_json::from_str(json).map_err(|e| StoreError::Internal(format!("corrupt session document: {e}")))?;
    let metadata = document
        .metadata
        .into_iter()
        .map(|(k, v)| STANDARD.decode(v).map(|v| (k, v)))
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::Internal(format!("corrupt session metadata: {e}")))?;
    session.factors = document.factors;
    session.metadata = metadata;
    session.user_agent = document.user_agent;
    session.otp_challenges = document.otp_challenges;
    session.passkey_challenge = document.passkey_challenge;
    Ok(())
}

pub(crate) fn encode_changes(changes: &[Change]) -> String {
    serde_json::to_string(changes).expect("changes always serialize")
}

pub(crate) fn decode_changes(json: &str) -> StoreResult<Vec<Change>> {
    serde_json::from_str(json).map_err(|e| StoreError::Internal(format!("corrupt history entry: {e}")))
}

/// A history row `(session_id, sequence, at, actor, changes)` as an entry.
pub(crate) fn history_entry(row: (String, i64, i64, String, String)) -> StoreResult<HistoryEntry> {
    let (session_id, sequence, at, actor, changes) = row;
    Ok(HistoryEntry {
        session_id,
        sequence: u64::try_from(sequence).unwrap_or_default(),
        at: Timestamp(at),
        actor,
        changes: decode_changes(&changes)?,
    })
}

/// The SQL operator of a timestamp comparison.
pub(crate) fn comparison(cmp: TimeComparison) -> &'static str {
    match cmp {
        TimeComparison::Equals => "=",
        TimeComparison::Greater => ">",
        TimeComparison::GreaterOrEquals => ">=",
        TimeComparison::Less => "<",
        TimeComparison::LessOrEquals => "<=",
    }
}

/// The `users` columns of a lockout counter: (failed attempts, locked).
pub(crate) fn lockout_columns(counter: LockoutCounter) -> (&'static str, &'static str) {
    match counter {
        LockoutCounter::Password => ("failed_attempts", "locked"),
        LockoutCounter::OneTimeCode => ("otp_failed_attempts", "otp_locked"),
    }
}

/// The `users` columns of a one-time-code method: (where codes go, whether it is enabled).
pub(crate) fn otp_columns(method: OtpMethod) -> (&'static str, &'static str) {
    match method {
        OtpMethod::Sms => ("phone", "otp_sms"),
        OtpMethod::Email => ("email", "otp_email"),
    }
}
