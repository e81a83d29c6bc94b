//! The store's one error type: every variant names the digest, ref, path or
//! store it is about, so a caller can print it as one line, and says its
//! [`ErrorKind`], so a caller can decide what to do without reading text.
//!
//! Causes stay typed: an I/O error, a `reqwest` error or an S3 client error
//! is kept as the error's `source`, never flattened into a string.

use std::path::PathBuf;

use cairn_digest::Digest;

/// A boxed cause, as kept by [`RemoteError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure a [`StoreError`] is: what a caller decides by.
///
/// The kinds answer "what now?": retry later ([`Unavailable`]), fix the
/// credentials ([`Unauthorized`], [`Forbidden`]), re-read and try again
/// ([`Conflict`]), or stop and report ([`InvalidRequest`], [`Corrupt`],
/// [`Io`]).
///
/// [`Unavailable`]: ErrorKind::Unavailable
/// [`Unauthorized`]: ErrorKind::Unauthorized
/// [`Forbidden`]: ErrorKind::Forbidden
/// [`Conflict`]: ErrorKind::Conflict
/// [`InvalidRequest`]: ErrorKind::InvalidRequest
/// [`Corrupt`]: ErrorKind::Corrupt
/// [`Io`]: ErrorKind::Io
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// What was asked for is not there: a blob, or a store itself.
    NotFound,
    /// No credentials, or credentials the store does not accept (HTTP 401,
    /// no S3 credentials at all).
    Unauthorized,
    /// Credentials accepted but without the right (HTTP 403).
    Forbidden,
    /// A compare-and-swap lost, or a create found the thing already there
    /// (HTTP 409, 412).
    Conflict,
    /// Bytes that do not hash to their digest, or a stored value or an
    /// answer that does not decode.
    Corrupt,
    /// The store could not be reached or did not answer in time, or failed
    /// on its side (connection refused, timeouts, HTTP 5xx): worth retrying.
    Unavailable,
    /// The request or the configuration behind it is wrong and retrying
    /// will not help: a bad URL, ref name or chunk list, a value too large,
    /// a certificate not trusted (HTTP 400, 413, 422).
    InvalidRequest,
    /// A local file or directory operation failed (disk full, permissions).
    Io,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not found",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Conflict => "conflict",
            Self::Corrupt => "corrupt",
            Self::Unavailable => "unavailable",
            Self::InvalidRequest => "invalid request",
            Self::Io => "I/O error",
        })
    }
}

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
    /// A ref whose name is the directory of another ref, or whose
    /// directory is another ref: a local store keeps refs as files, so
    /// `a` and `a/b` cannot both exist there (as in Git), and every other
    /// backend refuses the same, so that any store can be copied to any.
    #[error(
        "ref {name} cannot be written: ref {other} exists, and a store cannot hold \
         a ref both as a value and as the directory of other refs"
    )]
    RefPathTaken {
        /// The ref being written.
        name: String,
        /// The ref in its way (`<name>/…` for the refs below it).
        other: String,
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
    /// A local store that does not exist, opened by a command that only
    /// reads (see [`OpenOptions::create`](crate::OpenOptions::create)).
    #[error("no store at {} (a command that writes creates it; check --store)", path.display())]
    NoStore {
        /// The directory.
        path: PathBuf,
    },
    /// A directory that is not a cairn store, or one of a layout this
    /// version does not know.
    #[error("{} is not a cairn store: {reason}", path.display())]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A request that cannot be right whatever the store holds (a chunk
    /// list whose sizes do not add up to the file's).
    #[error("{what} is invalid: {reason}")]
    Invalid {
        /// What ("chunk list for sha256:…").
        what: String,
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
    /// Reading a blob's bytes broke off (a local read error, or a remote
    /// store's stream cut).
    #[error("reading blob {digest}: {source}")]
    Read {
        /// The blob.
        digest: Digest,
        /// What broke.
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
    /// A remote store (S3, a `cairn server`) failed or refused a request.
    #[error(transparent)]
    Remote(Box<RemoteError>),
}

/// A remote store (S3, a `cairn server`) failed or refused a request.
#[derive(Debug, thiserror::Error)]
#[error("{action} at {store}: {detail}")]
pub struct RemoteError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The store, as its URL.
    pub store: String,
    /// What was being done ("reading ref channels/x").
    pub action: String,
    /// What went wrong, in one line ("401 Unauthorized: unknown token");
    /// never the server's raw XML or HTML.
    pub detail: String,
    /// The client error behind it, if there was one (a `reqwest` or S3
    /// client error); absent when the server answered and refused.
    #[source]
    pub source: Option<Cause>,
}

impl From<RemoteError> for StoreError {
    fn from(e: RemoteError) -> Self {
        Self::Remote(Box::new(e))
    }
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

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) | Self::NoStore { .. } => ErrorKind::NotFound,
            Self::Corrupt { .. } | Self::Malformed { .. } => ErrorKind::Corrupt,
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::BadRefName { .. }
            | Self::RefTooLarge { .. }
            | Self::RefPathTaken { .. }
            | Self::BadUrl { .. }
            | Self::NotAStore { .. }
            | Self::Invalid { .. } => ErrorKind::InvalidRequest,
            Self::Io { .. } => ErrorKind::Io,
            Self::Read { source, .. } => read_kind(source),
            Self::Remote(e) => e.kind,
        }
    }
}

/// A broken read from a remote store's stream is [`ErrorKind::Unavailable`];
/// a local one is [`ErrorKind::Io`].
fn read_kind(e: &std::io::Error) -> ErrorKind {
    let inner = e.get_ref();
    let remote = inner.is_some_and(|i| i.is::<reqwest::Error>() || i.is::<object_store::Error>());
    if remote {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Io
    }
}

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_kind() {
        let d = Digest::of(b"x");
        let cases = [
            (StoreError::NotFound(d), ErrorKind::NotFound),
            (
                StoreError::NoStore { path: "/s".into() },
                ErrorKind::NotFound,
            ),
            (
                StoreError::Corrupt {
                    expected: d,
                    actual: d,
                },
                ErrorKind::Corrupt,
            ),
            (
                StoreError::Conflict {
                    name: "r".into(),
                    expected: "1".into(),
                    found: "2".into(),
                },
                ErrorKind::Conflict,
            ),
            (
                StoreError::BadUrl {
                    url: "x".into(),
                    reason: "y".into(),
                },
                ErrorKind::InvalidRequest,
            ),
            (
                StoreError::io("reading", "/x", std::io::Error::other("e")),
                ErrorKind::Io,
            ),
            (
                StoreError::from(RemoteError {
                    kind: ErrorKind::Unauthorized,
                    store: "http://h".into(),
                    action: "reading ref r".into(),
                    detail: "401 Unauthorized".into(),
                    source: None,
                }),
                ErrorKind::Unauthorized,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
        }
    }
}
