//! What both backends share: the parts of a session kept as one JSON document (factors, metadata,
//! user agent), the history's rows, and SQL comparison operators.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};

use super::{StoreError, StoreResult};
use crate::domain::{
    Timestamp,
    session::{Change, Factors, HistoryEntry, Session, TimeComparison, UserAgent},
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
}

pub(crate) fn encode_state(session: &Session) -> String {
    let document = SessionDocument {
        factors: session.factors.clone(),
        metadata: session.metadata.iter().map(|(k, v)| (k.clone(), STANDARD.encode(v))).collect(),
        user_agent: session.user_agent.clone(),
    };
    serde_json::to_string(&document).expect("session documents always serialize")
}

pub(crate) type DecodedState = (Factors, BTreeMap<String, Vec<u8>>, UserAgent);

pub(crate) fn decode_state(json: &str) -> StoreResult<DecodedState> {
    let document: SessionDocument =
        serde_json::from_str(json).map_err(|e| StoreError::Internal(format!("corrupt session document: {e}")))?;
    let metadata = document
        .metadata
        .into_iter()
        .map(|(k, v)| STANDARD.decode(v).map(|v| (k, v)))
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::Internal(format!("corrupt session metadata: {e}")))?;
    Ok((document.factors, metadata, document.user_agent))
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
