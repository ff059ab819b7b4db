//! What the bulk loader and the load generator must agree on: the ids of benchmark sessions.

use sha2::{Digest, Sha256};

/// The id of the `index`-th session of the pool `seed`, shaped like sessiond's own ids (a 48-bit
/// creation-time prefix, then 80 bits that look random, as 32 hex digits): the prefix ascends
/// with the index, as for sessions created one after another, and each pool has a range of its
/// own. Nothing needs to be shared through a file.
pub(crate) fn session_id(seed: &str, index: u64) -> String {
    let digest = Sha256::new().chain_update(seed.as_bytes()).chain_update(index.to_be_bytes()).finalize();
    let pool = Sha256::digest(seed.as_bytes());
    let base = u64::from(u32::from_be_bytes([pool[0], pool[1], pool[2], pool[3]]) & 0x00ff_ffff) << 24;
    let random: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    format!("{:012x}{random}", (base + index) & 0xffff_ffff_ffff)
}
