//! Copying a closure of blobs from one store to another, moving only what
//! the destination lacks.
//!
//! [`copy_closure`] walks everything a root blob reaches (for a tree: every
//! `Directory` message and every file; the edges are those garbage
//! collection follows, [`cairn_store::reach::blob_edges`]), asks the destination
//! which blobs it already has, and copies the rest, many at a time. Blobs
//! that name other blobs go last, deepest first, so a reader of the
//! destination never finds a directory whose contents are missing. A rerun
//! after an interruption copies only what is still missing: resumable by
//! construction.
//!
//! Large files travel as content-defined chunks ([`chunks`]), so a small
//! change to a large artifact moves only the chunks around the change.
//!
//! Nothing here prints: progress goes through [`Progress`], and the outcome
//! is a [`CopyReport`] for the caller to render.

pub mod chunks;
mod closure;
mod copy;
pub mod counting;

use cairn_digest::Digest;
use cairn_store::{ErrorKind, StoreError};

pub use cairn_store::reach::Kind;
pub use copy::copy_closure;
pub use counting::CountingStore;

/// How to copy.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Files larger than this many bytes travel as chunks.
    pub chunk_threshold: u64,
    /// Blobs copied at once.
    pub concurrency: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            chunk_threshold: 1 << 20,
            concurrency: 16,
        }
    }
}

impl CopyOptions {
    /// Every file sent whole, never as chunks: what a push from a local
    /// cache to a remote store uses (the commands' pushes and the remote
    /// action cache alike). To an S3 store, chunks would be uploaded and
    /// then the whole file again (S3 cannot assemble); to a `cairn server`,
    /// which assembles, chunked pushes would save bytes for a changed large
    /// file, but pushes have not been switched over.
    pub fn whole_files() -> Self {
        Self {
            chunk_threshold: u64::MAX,
            ..Self::default()
        }
    }
}

/// What a copy did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// Blobs in the closure.
    pub blobs_total: u64,
    /// Blobs the destination lacked (and now holds).
    pub blobs_copied: u64,
    /// Bytes handed to the destination's `put`: whole small blobs, new
    /// chunks and chunk lists, and whole chunked files only where the
    /// destination could not assemble them from their chunks itself.
    pub bytes_copied: u64,
    /// Large files that travelled as chunks.
    pub files_chunked: u64,
    /// Chunks of those files.
    pub chunks_total: u64,
    /// Chunks the destination already held, so did not travel.
    pub chunks_reused: u64,
}

/// Progress of a copy, for a progress bar; every method has a no-op default.
pub trait Progress: Send + Sync {
    /// The closure is known: `missing` of `total` blobs, `bytes` in all, must move.
    fn planned(&self, _total: u64, _missing: u64, _bytes: u64) {}
    /// One blob of `size` bytes is now in the destination.
    fn copied(&self, _digest: &Digest, _size: u64) {}
}

/// Reports nothing.
impl Progress for () {}

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Reading the closure from the source failed.
    #[error("walking the closure of {root}: {source}")]
    Walk {
        /// The root being copied.
        root: Digest,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// The source lacks a blob of the closure.
    #[error("blob {0} is in the closure but not in the source store")]
    Missing(Digest),
    /// Copying one blob failed.
    #[error("copying blob {digest}: {source}")]
    Blob {
        /// The blob.
        digest: Digest,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// A store operation not tied to one blob failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A chunk list that does not describe its file.
    #[error("chunk list for {file} is malformed: {reason}")]
    BadChunkList {
        /// The file it claims to describe.
        file: Digest,
        /// Why it is refused.
        reason: String,
    },
    /// Spooling or chunking a file locally failed.
    #[error("chunking {file} in a temporary file: {source}")]
    Spool {
        /// The file.
        file: Digest,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl TransferError {
    /// What kind of failure this is, for a caller that must decide (retry
    /// an outage, report a bad token): the kind of the store error behind
    /// it; a blob the source lacks is [`ErrorKind::NotFound`], a malformed
    /// chunk list [`ErrorKind::Corrupt`], a local spool failure
    /// [`ErrorKind::Io`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Walk { source, .. } | Self::Blob { source, .. } | Self::Store(source) => {
                source.kind()
            }
            Self::Missing(_) => ErrorKind::NotFound,
            Self::BadChunkList { .. } => ErrorKind::Corrupt,
            Self::Spool { .. } => ErrorKind::Io,
        }
    }
}

/// Shorthand for results of transfers.
pub type Result<T, E = TransferError> = std::result::Result<T, E>;
