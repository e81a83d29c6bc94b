//! Errors of snapshotting and materializing, each naming the path at fault.

use std::path::PathBuf;

use cairn_store::StoreError;

/// What went wrong moving a directory in or out of the store.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A socket, device or FIFO: trees hold only files, directories, symlinks.
    #[error("{}: cannot store a {kind}; only files, directories and symlinks", path.display())]
    Unsupported {
        /// The entry.
        path: PathBuf,
        /// "socket", "FIFO", "device".
        kind: &'static str,
    },
    /// A name that is not valid UTF-8 or not allowed in a tree.
    #[error("{}: {reason}", path.display())]
    BadName {
        /// The entry.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A symlink that would point outside the materialized tree.
    #[error("symlink {} -> {target} points outside the tree; refusing to create it", path.display())]
    EscapingSymlink {
        /// Where it would be created.
        path: PathBuf,
        /// Its target.
        target: String,
    },
    /// The checkout destination already holds something.
    #[error("{} exists and is not an empty directory", .0.display())]
    DestinationNotEmpty(PathBuf),
    /// An exclude glob that does not parse.
    #[error("bad exclude pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// A tree in the store that does not decode.
    #[error("directory {digest} in the store is malformed: {source}")]
    BadTree {
        /// Its digest.
        digest: cairn_digest::Digest,
        /// Why.
        #[source]
        source: cairn_tree::TreeError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SnapshotError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
