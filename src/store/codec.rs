//! The parts of a session both backends keep as one JSON document (factors, metadata, user
//! agent), and the history's change list.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};

use super::{StoreError, StoreResult};
use crate::domain::session::{Change, Factors, Session, UserAgent};

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
