//! Moving directories in and out of the store.
//!
//! [`snapshot`] turns a local file or directory into a blob or a tree:
//! files are hashed and stored in parallel (one read each), directories
//! are encoded bottom-up as REAPI `Directory` messages, and a stat cache
//! lets an unchanged file be re-added without reading it. [`materialize`]
//! writes a tree back out, each file its own copy (or, when asked, a hard
//! link into the store).
//!
//! Both work on the local directory store ([`cairn_store::FsStore`]): a
//! remote store receives trees by copying them from a local one, as git
//! commits locally and pushes.

mod error;
mod fingerprint;
mod links;
mod materialize;
mod snapshot;
mod stat_cache;
mod walk;

pub use error::SnapshotError;
pub use materialize::{load_tree, materialize, MaterializeOptions, Placement, TreeListing};
pub use snapshot::{snapshot, snapshot_unconfirmed, Added, SnapshotOptions, Unconfirmed};

/// Receives progress from long operations; the CLI draws it, tests ignore it.
pub trait Progress: Sync {
    /// `files` more files of `bytes` bytes in total are done.
    fn advance(&self, files: u64, bytes: u64);
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _: u64, _: u64) {}
}
