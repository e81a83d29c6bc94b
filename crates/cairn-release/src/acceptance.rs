//! Acceptance: may a consumer act on what a channel says now?
//!
//! The chain every consumer runs, in one function ([`accept`]):
//!
//! 1. read the channel's newest statement envelope (not parsed before its
//!    signatures are checked);
//! 2. [`verify_channel`] against the consumer's policy entry, its public
//!    keys, its high-water mark (rollback protection) and its clock;
//! 3. load the release the statement names (its payload blob is verified
//!    against the signed digest) and [`verify_release`] with the channel's
//!    trusted keys;
//! 4. the release is for this service, its run specification is one an
//!    agent can run, and its artifact's root directory is in the store.
//!
//! `cairn channel verify` and `cairn agent` both call it, so they cannot
//! disagree. The answer is typed: [`Accepted`] with everything the
//! consumer needs next, or an [`AcceptError`] that tells a refusal
//! ([`Refused`]: do not act, report) from a store that could not be asked
//! (retry later) and from a channel with no statement yet.
//!
//! The high-water mark is the consumer's memory of the newest statement it
//! accepted ([`HighWaterMarks`]). The same statement read again is accepted
//! (its sequence equals the mark *and* its digest is the one recorded), so
//! a restarted consumer picks up where it was; any other statement must
//! have a higher sequence.

use cairn_digest::Digest;
use cairn_recipe::RunSpec;
use cairn_store::{BlobStoreExt, Store, StoreError};
use cairn_trust::{
    verify_channel, verify_release, ChannelPolicy, Envelope, KeySet, Refusal, Release,
    VerifiedStatement,
};
use time::OffsetDateTime;

use crate::channel::channel_ref;
use crate::error::ReleaseError;
use crate::marks::Mark;
use crate::release::load_release;

/// A statement and its release that passed every check.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The verified statement (sequence, signers, digest).
    pub statement: VerifiedStatement,
    /// Its envelope, as read.
    pub statement_envelope: Envelope,
    /// The release's digest (of its payload).
    pub release_digest: Digest,
    /// The release document.
    pub release: Release,
    /// The release's envelope, as read.
    pub release_envelope: Envelope,
    /// Its run specification, validated.
    pub run: RunSpec,
    /// Whether this statement is newer than the consumer's high-water mark
    /// (false: the very statement accepted last time, read again).
    pub is_new: bool,
}

impl Accepted {
    /// The high-water mark this acceptance sets.
    pub fn mark(&self) -> Mark {
        Mark {
            sequence: self.statement.statement.sequence,
            statement: self.statement.digest,
            release: self.release_digest,
        }
    }
}

/// Why a statement or its release was refused: nothing of it may be
/// fetched or run.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The channel ref does not hold an envelope.
    #[error("the channel ref is not a signed envelope: {0}")]
    NotAnEnvelope(String),
    /// The statement failed verification (signatures, threshold, sequence,
    /// expiry, service or channel).
    #[error(transparent)]
    Statement(Refusal),
    /// The release the statement names is not in the store, or not signed.
    #[error("release {release}: {source}")]
    ReleaseUnavailable {
        /// The release.
        release: Digest,
        /// What is missing.
        #[source]
        source: ReleaseError,
    },
    /// The release failed verification.
    #[error("release {release}: {reason}")]
    Release {
        /// The release.
        release: Digest,
        /// Why.
        #[source]
        reason: Refusal,
    },
    /// The release is for another service.
    #[error("release {release} is for service {got:?}")]
    OtherService {
        /// The release.
        release: Digest,
        /// The service it names.
        got: String,
    },
    /// The release's run specification cannot be run.
    #[error("release {release}: {source}")]
    BadRunSpec {
        /// The release.
        release: Digest,
        /// Why.
        #[source]
        source: cairn_recipe::RunSpecError,
    },
    /// The artifact's root directory is not in the store or is not a tree.
    #[error("release {release}: artifact {artifact} {problem}")]
    Artifact {
        /// The release.
        release: Digest,
        /// The artifact.
        artifact: Digest,
        /// What is wrong with it.
        problem: String,
    },
}

/// Why [`accept`] did not accept.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The channel has no statement yet.
    #[error("channel {service}/{channel} has no statement yet")]
    Empty {
        /// The service.
        service: String,
        /// The channel.
        channel: String,
    },
    /// The statement or its release was refused.
    #[error("refused channel {service}/{channel}: {reason}")]
    Refused {
        /// The service.
        service: String,
        /// The channel.
        channel: String,
        /// Why.
        #[source]
        reason: Refused,
    },
    /// The store could not be asked; nothing was decided.
    #[error("checking channel {service}/{channel}: {source}")]
    Store {
        /// The service.
        service: String,
        /// The channel.
        channel: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
}

impl AcceptError {
    /// The refusal, if this is one.
    pub fn refusal(&self) -> Option<&Refused> {
        match self {
            Self::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// Runs the whole acceptance chain for the channel `policy` is about.
///
/// `keys` are the public keys the consumer has (only those `policy` lists
/// count), `last` its high-water mark for the channel, `now` its clock.
pub async fn accept(
    store: &Store,
    policy: &ChannelPolicy,
    keys: &KeySet,
    last: Option<&Mark>,
    now: OffsetDateTime,
) -> Result<Accepted, AcceptError> {
    let (service, channel) = (policy.service.as_str(), policy.channel.as_str());
    let refused = |reason| AcceptError::Refused {
        service: service.into(),
        channel: channel.into(),
        reason,
    };
    let store_failed = |source| AcceptError::Store {
        service: service.into(),
        channel: channel.into(),
        source,
    };
    let name = channel_ref(service, channel).map_err(|e| match e {
        ReleaseError::Store(s) => store_failed(s),
        other => refused(Refused::NotAnEnvelope(other.to_string())),
    })?;
    let Some(stored) = store.refs.get(&name).await.map_err(store_failed)? else {
        return Err(AcceptError::Empty {
            service: service.into(),
            channel: channel.into(),
        });
    };
    let envelope = Envelope::from_json(&stored.value)
        .map_err(|e| refused(Refused::NotAnEnvelope(e.to_string())))?;
    let same = last.filter(|m| m.statement == envelope.payload_digest());
    // The statement accepted last time may be read again; anything else
    // must be newer than it.
    let floor = match (last, same) {
        (_, Some(m)) => m.sequence.checked_sub(1),
        (Some(m), None) => Some(m.sequence),
        (None, _) => None,
    };
    let statement = verify_channel(&envelope, policy, keys, floor, now)
        .map_err(|r| refused(Refused::Statement(r)))?;
    let release = statement.statement.release;
    let loaded = match load_release(store, &release).await {
        Ok(loaded) => loaded,
        Err(ReleaseError::Store(e)) if !is_absent(&e) => return Err(store_failed(e)),
        Err(source) => return Err(refused(Refused::ReleaseUnavailable { release, source })),
    };
    let trusted: KeySet = policy
        .keys
        .iter()
        .filter_map(|id| keys.get(id))
        .copied()
        .collect();
    let doc = verify_release(&loaded.envelope, &trusted, &release)
        .map_err(|reason| refused(Refused::Release { release, reason }))?;
    if doc.service != service {
        return Err(refused(Refused::OtherService {
            release,
            got: doc.service,
        }));
    }
    let run = RunSpec::from_json(&doc.run)
        .map_err(|source| refused(Refused::BadRunSpec { release, source }))?;
    check_artifact(store, &doc.artifact)
        .await
        .map_err(|e| match e {
            ArtifactCheck::Store(e) => store_failed(e),
            ArtifactCheck::Bad(problem) => refused(Refused::Artifact {
                release,
                artifact: doc.artifact,
                problem,
            }),
        })?;
    Ok(Accepted {
        is_new: same.is_none(),
        statement,
        statement_envelope: envelope,
        release_digest: release,
        release: doc,
        release_envelope: loaded.envelope,
        run,
    })
}

/// A store error that means "not there" rather than "could not ask".
fn is_absent(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::NotFound(_) | StoreError::Corrupt { .. } | StoreError::Malformed { .. }
    )
}

enum ArtifactCheck {
    Store(StoreError),
    Bad(String),
}

/// The artifact's root directory must be in the store and decode as a tree.
async fn check_artifact(store: &Store, artifact: &Digest) -> Result<(), ArtifactCheck> {
    let bytes = match store.blobs.get_bytes(artifact).await {
        Ok(bytes) => bytes,
        Err(e) if is_absent(&e) => return Err(ArtifactCheck::Bad(e.to_string())),
        Err(e) => return Err(ArtifactCheck::Store(e)),
    };
    cairn_tree::decode_directory(&bytes)
        .map(|_| ())
        .map_err(|e| ArtifactCheck::Bad(format!("is not a tree: {e}")))
}
