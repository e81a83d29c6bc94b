//! Named test fixtures shared by the unit tests: deterministic keys, times
//! and documents, so tests say *which* key or release they mean.

use cairn_digest::Digest;
use time::macros::datetime;
use time::OffsetDateTime;

use crate::document::{ChannelStatement, Document, Release};
use crate::dsse::Envelope;
use crate::key::{KeySet, SigningKey};
use crate::policy::ChannelPolicy;

/// Seed of key A (trusted for `hello/prod`).
pub const KEY_A_SEED: [u8; 32] = [1; 32];
/// Seed of key B (trusted for `hello/prod`).
pub const KEY_B_SEED: [u8; 32] = [2; 32];
/// Seed of key C (never trusted).
pub const KEY_C_SEED: [u8; 32] = [3; 32];
/// Key id of key A, computed independently (Python `cryptography`).
pub const KEY_A_ID: &str = "ed25519:34750f98bd59fcfc946da45aaabe933b";
/// Key id of key B.
pub const KEY_B_ID: &str = "ed25519:6a3803d5f059902a1c6dafbc9ba47292";
/// Key id of key C.
pub const KEY_C_ID: &str = "ed25519:b62e867fa2f33afe62d5d6b1642e1621";

/// The service every fixture talks about.
pub const SERVICE: &str = "hello";
/// The channel every fixture talks about.
pub const CHANNEL: &str = "prod";
/// Release creation time.
pub const CREATED: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);
/// "Now" for verification: after creation, before expiry.
pub const NOW: OffsetDateTime = datetime!(2026-01-02 12:00 UTC);
/// Expiry of the fixture channel statement.
pub const EXPIRES: OffsetDateTime = datetime!(2026-01-08 12:00 UTC);
/// Sequence number of the fixture channel statement.
pub const SEQUENCE: u64 = 7;
/// The artifact tree's bytes (stand-in for an encoded root `Directory`).
pub const ARTIFACT_BYTES: &[u8] = b"artifact tree";

/// Key A.
pub fn key_a() -> SigningKey {
    SigningKey::from_seed(&KEY_A_SEED)
}

/// Key B.
pub fn key_b() -> SigningKey {
    SigningKey::from_seed(&KEY_B_SEED)
}

/// Key C.
pub fn key_c() -> SigningKey {
    SigningKey::from_seed(&KEY_C_SEED)
}

/// Public keys of A, B and C: the verifier knows all three, the policy
/// decides which count.
pub fn all_keys() -> KeySet {
    [key_a(), key_b(), key_c()]
        .iter()
        .map(SigningKey::public_key)
        .collect()
}

/// `hello/prod` trusting A and B with the given threshold.
pub fn policy(threshold: usize) -> ChannelPolicy {
    ChannelPolicy {
        service: SERVICE.into(),
        channel: CHANNEL.into(),
        keys: vec![key_a().key_id(), key_b().key_id()],
        threshold,
    }
}

/// The fixture release.
pub fn release() -> Release {
    Release {
        service: SERVICE.into(),
        version: "1.2.3".into(),
        artifact: Digest::of(ARTIFACT_BYTES),
        action: Digest::of(b"action"),
        run: serde_json::json!({"command": ["bin/hello"]}),
        deploy: None,
        provenance: Digest::of(b"provenance"),
        created: CREATED,
    }
}

/// The fixture channel statement, pointing at [`release`].
pub fn statement() -> ChannelStatement {
    ChannelStatement {
        service: SERVICE.into(),
        channel: CHANNEL.into(),
        release: release().to_envelope().payload_digest(),
        sequence: SEQUENCE,
        previous: None,
        expires: EXPIRES,
        issued: None,
    }
}

/// `doc` in an envelope signed by each of `keys` in turn.
pub fn signed<D: Document>(doc: &D, keys: &[SigningKey]) -> Envelope {
    let mut env = doc.to_envelope();
    keys.iter().for_each(|k| env.sign(k));
    env
}
