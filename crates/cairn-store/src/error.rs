//! The store's one error type: every variant names the digest, ref or path
//! it is about, so a caller can print it as one line.

use std::path::PathBuf;

use cairn_digest::Digest;

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The blob is not in the store.
    #[error("blob {0} is not in the store")]
    NotFound(Digest),
    /// Bytes did not hash to the digest they were stored or sent under.
    #[error("blob {expected} is corrupt: its bytes hash to {actual:#}")]
    Corrupt {
        /// The digest the bytes should have.
        expected: Digest,
        /// What they hash to.
        actual: Digest,
    },
    /// A compare-and-swap lost: the ref is not at the expected version.
    #[error("ref {name} changed concurrently (expected {expected}, found {found})")]
    Conflict {
        /// The ref.
        name: String,
        /// The version the caller expected (`absent` for a create).
        expected: String,
        /// The version found (`absent` if the ref does not exist).
        found: String,
    },
    /// A ref name that is not allowed.
    #[error("invalid ref name {name:?}: {reason}")]
    BadRefName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A ref value larger than refs may be.
    #[error("ref {name} value of {size} bytes exceeds the {limit}-byte limit")]
    RefTooLarge {
        /// The ref.
        name: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A store URL that does not parse or names no backend.
    #[error("invalid store URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A file or directory operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("writing", "renaming", ...).
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A stored value that does not decode.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// What ("directory sha256:…", "ref channels/x").
        what: String,
        /// Why.
        reason: String,
    },
    /// A remote backend failed.
    #[error("{backend}: {message}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What it said.
        message: String,
    },
}

impl StoreError {
    /// An I/O error with what was being done and where.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
