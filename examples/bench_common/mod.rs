//! What the bulk loader and the load generator must agree on: the ids of benchmark sessions.

use sha2::{Digest, Sha256};

/// Milliseconds the pools' creation times spread over (30 days), ending at a fixed instant.
const WINDOW_MS: u64 = 30 * 24 * 3600 * 1000;
const WINDOW_END_MS: u64 = 1_800_000_000_000;

/// The id of the `index`-th session of the pool `seed`, shaped like sessiond's own
/// (`new_session_id`: 48 bits of creation milliseconds, then 80 random bits, as 32 hex digits) yet
/// computable without a file. The creation times scatter over a 30-day window, so consecutive
/// indices land on unrelated pages of the id-clustered table: the benchmark deletes sessions in
/// random order of creation, the pessimistic case for a cache.
pub(crate) fn session_id(seed: &str, index: u64) -> String {
    let digest = Sha256::new().chain_update(seed.as_bytes()).chain_update(index.to_be_bytes()).finalize();
    let spread = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % WINDOW_MS;
    format!("{:012x}{}", WINDOW_END_MS - WINDOW_MS + spread, hex::encode(&digest[8..18]))
}
