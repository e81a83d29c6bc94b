//! Errors of release and channel operations, naming the digest or ref.

use cairn_digest::Digest;
use cairn_store::StoreError;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A digest that names no release.
    #[error("{0} is not a release: {1}")]
    NotARelease(Digest, String),
    /// A release document without its signed envelope.
    #[error("release {0} has no signed envelope in the store (ref {1})")]
    Unsigned(Digest, String),
    /// A document or envelope in the store that does not parse.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// What.
        what: String,
        /// Why.
        reason: String,
    },
    /// Nothing has been promoted to the channel.
    #[error("channel {service}/{channel} has no statement yet")]
    EmptyChannel {
        /// The service.
        service: String,
        /// The channel.
        channel: String,
    },
    /// No earlier release to roll back to.
    #[error("channel {service}/{channel} has no earlier release to roll back to")]
    NothingToRollBackTo {
        /// The service.
        service: String,
        /// The channel.
        channel: String,
    },
    /// A rollback to the release the channel is already at.
    #[error("channel {service}/{channel} is already at release {release}")]
    AlreadyThere {
        /// The service.
        service: String,
        /// The channel.
        channel: String,
        /// The release.
        release: Digest,
    },
    /// A rollback to a release the channel never pointed at.
    #[error("release {release} was never on channel {service}/{channel}; roll back to one of its history (`cairn channel history {service} {channel}`), or promote it")]
    NotInHistory {
        /// The service.
        service: String,
        /// The channel.
        channel: String,
        /// The release.
        release: Digest,
    },
    /// A channel copy whose destination has statements the source lacks.
    #[error("channel {service}/{channel} at the destination has diverged: its statement #{sequence} ({statement}) is not in the history being copied; promote there instead")]
    Diverged {
        /// The service.
        service: String,
        /// The channel.
        channel: String,
        /// The destination's newest sequence.
        sequence: u64,
        /// The destination's newest statement.
        statement: Digest,
    },
    /// Copying blobs between stores failed.
    #[error(transparent)]
    Transfer(Box<cairn_transfer::TransferError>),
    /// A name that cannot be a service or channel.
    #[error(transparent)]
    Document(#[from] cairn_trust::DocumentError),
    /// Promotion kept losing races.
    #[error("gave up promoting to {0} after {1} concurrent updates")]
    Contended(String, u32),
}

impl From<cairn_transfer::TransferError> for ReleaseError {
    fn from(e: cairn_transfer::TransferError) -> Self {
        Self::Transfer(Box::new(e))
    }
}
