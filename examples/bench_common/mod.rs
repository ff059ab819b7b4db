//! What the bulk loader and the load generator must agree on: the ids of benchmark sessions.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// The id of the `index`-th session of the pool `seed`: 128 bits that look random (as sessiond's
/// own ids do, so they land all over the primary-key B-tree) yet need no file to be shared.
pub(crate) fn session_id(seed: &str, index: u64) -> String {
    let digest = Sha256::new().chain_update(seed.as_bytes()).chain_update(index.to_be_bytes()).finalize();
    URL_SAFE_NO_PAD.encode(&digest[..16])
}
