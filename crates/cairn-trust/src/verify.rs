//! The one place where a signed document is accepted or refused.
//!
//! The CLI (`cairn verify`, `cairn promote` checking the current head) and
//! the agent both call [`verify_channel`] and [`verify_release`], so there
//! is exactly one definition of "trusted". Every refusal is a precise
//! [`Refusal`] variant an operator can act on.
//!
//! Order of checks: payload type, then signatures, then the payload is
//! parsed, then its claims (service, channel, sequence, expiry) are checked.
//! Signatures come before parsing so that unsigned bytes are never
//! interpreted; claims come after so that a refusal such as `StaleSequence`
//! is only reported for a genuinely signed statement.

use std::collections::BTreeSet;

use cairn_digest::Digest;
use time::OffsetDateTime;

use crate::document::{ChannelStatement, Document, DocumentError, Release, Statement};
use crate::dsse::{Envelope, SignatureCheck};
use crate::key::{KeyId, KeySet};
use crate::policy::ChannelPolicy;

/// Why a signed document was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The envelope carries another kind of document.
    #[error("payload type is {got:?}, expected {expected:?}")]
    WrongPayloadType {
        /// The type required here.
        expected: &'static str,
        /// The type in the envelope.
        got: String,
    },
    /// A trusted key's signature does not match the payload (tampering).
    #[error("signature by {0} does not verify: the payload or signature was altered")]
    BadSignature(KeyId),
    /// Signed only by keys the policy does not list.
    #[error("signed by key {0}, which the trust policy does not list for this channel")]
    UnknownKey(String),
    /// The policy lists the key but the verifier has no public key for it.
    #[error("signed by key {0}, which the policy trusts but whose public key is not available")]
    MissingPublicKey(KeyId),
    /// Fewer distinct trusted keys signed than the threshold requires.
    #[error("only {have} distinct trusted key(s) signed, the channel requires {need}")]
    BelowThreshold {
        /// Distinct trusted keys with valid signatures.
        have: usize,
        /// The policy's threshold.
        need: usize,
    },
    /// The statement's sequence is not above the last accepted one
    /// (a replay or rollback attack).
    #[error("sequence {got} is not greater than the last accepted sequence {last}")]
    StaleSequence {
        /// The statement's sequence.
        got: u64,
        /// The last accepted sequence.
        last: u64,
    },
    /// The statement expired (a freeze attack, or nobody re-signed it).
    #[error(
        "statement expired at {}, it is now {}",
        rfc3339(expires),
        rfc3339(now)
    )]
    Expired {
        /// The statement's expiry.
        expires: OffsetDateTime,
        /// The verifier's current time.
        now: OffsetDateTime,
    },
    /// The statement is for another service.
    #[error("statement is for service {got:?}, expected {expected:?}")]
    WrongService {
        /// The service being verified for.
        expected: String,
        /// The service in the statement.
        got: String,
    },
    /// The statement is for another channel.
    #[error("statement is for channel {got:?}, expected {expected:?}")]
    WrongChannel {
        /// The channel being verified for.
        expected: String,
        /// The channel in the statement.
        got: String,
    },
    /// The release's payload is not the one that was asked for.
    #[error("release payload has digest {got}, expected {expected}")]
    ReleaseDigestMismatch {
        /// The digest asked for (from a channel statement or the user).
        expected: Digest,
        /// The digest of the payload received.
        got: Digest,
    },
    /// No trusted key signed the release.
    #[error(
        "release is not signed by any trusted key (signed by: {})",
        list_or_none(signers)
    )]
    ReleaseUntrusted {
        /// The key ids that did sign it.
        signers: Vec<String>,
    },
    /// An attestation about another image (or artifact) than the one asked for.
    #[error("the statement is about {got}, not {expected}")]
    WrongSubject {
        /// The digest being verified.
        expected: Digest,
        /// The subject digests the statement names.
        got: String,
    },
    /// The signed payload is not a valid document.
    #[error("signed payload is malformed: {0}")]
    MalformedPayload(#[source] DocumentError),
}

/// A channel statement that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedStatement {
    /// The statement.
    pub statement: ChannelStatement,
    /// The distinct trusted keys that signed it.
    pub signers: BTreeSet<KeyId>,
    /// Its payload digest (the next statement's `previous`).
    pub digest: Digest,
}

/// Verifies a channel statement envelope for the channel `policy` is about.
///
/// `keys` are the public keys the verifier has; only those listed in
/// `policy` count. `last_accepted` is the sequence of the last statement
/// this verifier accepted for the channel (`None` on first contact); `now`
/// is the verifier's clock.
pub fn verify_channel(
    envelope: &Envelope,
    policy: &ChannelPolicy,
    keys: &KeySet,
    last_accepted: Option<u64>,
    now: OffsetDateTime,
) -> Result<VerifiedStatement, Refusal> {
    check_payload_type::<ChannelStatement>(envelope)?;
    let signers = check_threshold(envelope, policy, keys)?;
    let statement = parse::<ChannelStatement>(envelope)?;
    check_claims(&statement, policy, last_accepted, now)?;
    Ok(VerifiedStatement {
        statement,
        signers,
        digest: envelope.payload_digest(),
    })
}

/// Verifies a release envelope: it must be the release named by `expected`
/// (its payload digest) and be signed by at least one key in `trusted`.
pub fn verify_release(
    envelope: &Envelope,
    trusted: &KeySet,
    expected: &Digest,
) -> Result<Release, Refusal> {
    check_payload_type::<Release>(envelope)?;
    let got = envelope.payload_digest();
    if got != *expected {
        return Err(Refusal::ReleaseDigestMismatch {
            expected: *expected,
            got,
        });
    }
    let check = envelope.check(trusted);
    if check.valid.is_empty() {
        return Err(match check.invalid.into_iter().next() {
            Some(id) => Refusal::BadSignature(id),
            None => Refusal::ReleaseUntrusted {
                signers: check.unknown,
            },
        });
    }
    parse(envelope)
}

/// Verifies an in-toto attestation envelope about `subject` (e.g. an image
/// manifest) the way [`verify_channel`] verifies a channel statement: the
/// keys and threshold of `policy`, then the statement's subject, then its
/// `service` parameter against the policy's service.
pub fn verify_attestation(
    envelope: &Envelope,
    policy: &ChannelPolicy,
    keys: &KeySet,
    subject: &Digest,
) -> Result<Statement, Refusal> {
    check_payload_type::<Statement>(envelope)?;
    check_threshold(envelope, policy, keys)?;
    let statement = parse::<Statement>(envelope)?;
    if !statement
        .subject
        .iter()
        .any(|s| s.digest.sha256 == subject.hex())
    {
        let got = statement
            .subject
            .iter()
            .map(|s| format!("sha256:{}", s.digest.sha256));
        return Err(Refusal::WrongSubject {
            expected: *subject,
            got: got.collect::<Vec<_>>().join(", "),
        });
    }
    let service = statement
        .predicate
        .build_definition
        .external_parameters
        .get("service")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if service != policy.service {
        return Err(Refusal::WrongService {
            expected: policy.service.clone(),
            got: service.to_owned(),
        });
    }
    Ok(statement)
}

fn check_payload_type<D: Document>(envelope: &Envelope) -> Result<(), Refusal> {
    if envelope.payload_type == D::PAYLOAD_TYPE {
        Ok(())
    } else {
        Err(Refusal::WrongPayloadType {
            expected: D::PAYLOAD_TYPE,
            got: envelope.payload_type.clone(),
        })
    }
}

fn parse<D: Document>(envelope: &Envelope) -> Result<D, Refusal> {
    D::from_payload(&envelope.payload).map_err(Refusal::MalformedPayload)
}

/// The distinct policy keys with valid signatures, if they reach the
/// threshold; otherwise the most useful reason they do not.
fn check_threshold(
    envelope: &Envelope,
    policy: &ChannelPolicy,
    keys: &KeySet,
) -> Result<BTreeSet<KeyId>, Refusal> {
    let usable: KeySet = policy
        .keys
        .iter()
        .filter_map(|id| keys.get(id))
        .copied()
        .collect();
    let check = envelope.check(&usable);
    if check.valid.len() >= policy.threshold {
        return Ok(check.valid);
    }
    Err(threshold_refusal(check, policy))
}

fn threshold_refusal(check: SignatureCheck, policy: &ChannelPolicy) -> Refusal {
    if let Some(id) = check.invalid.into_iter().next() {
        return Refusal::BadSignature(id);
    }
    let have = check.valid.len();
    let missing = check
        .unknown
        .iter()
        .filter_map(|k| k.parse::<KeyId>().ok())
        .find(|id| policy.trusts(id));
    match (have, missing, check.unknown.first()) {
        (0, Some(id), _) => Refusal::MissingPublicKey(id),
        (0, None, Some(unknown)) => Refusal::UnknownKey(unknown.clone()),
        _ => Refusal::BelowThreshold {
            have,
            need: policy.threshold,
        },
    }
}

fn check_claims(
    st: &ChannelStatement,
    policy: &ChannelPolicy,
    last_accepted: Option<u64>,
    now: OffsetDateTime,
) -> Result<(), Refusal> {
    if st.service != policy.service {
        return Err(Refusal::WrongService {
            expected: policy.service.clone(),
            got: st.service.clone(),
        });
    }
    if st.channel != policy.channel {
        return Err(Refusal::WrongChannel {
            expected: policy.channel.clone(),
            got: st.channel.clone(),
        });
    }
    if let Some(last) = last_accepted.filter(|last| st.sequence <= *last) {
        return Err(Refusal::StaleSequence {
            got: st.sequence,
            last,
        });
    }
    if st.expires <= now {
        return Err(Refusal::Expired {
            expires: st.expires,
            now,
        });
    }
    Ok(())
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nobody".into()
    } else {
        items.join(", ")
    }
}

fn rfc3339(t: &OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests;
