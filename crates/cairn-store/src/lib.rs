//! cairn's content-addressed store.
//!
//! Two primitives, on every backend: immutable **blobs** named by their
//! digest ([`BlobStore`]), and small mutable **refs** that change only by
//! compare-and-swap ([`RefStore`]). Everything cairn keeps — sources,
//! toolchains, build outputs, releases, channel statements, fleet records —
//! is one or the other.
//!
//! The traits are small on purpose: verification is built into reads
//! ([`VerifyingReader`]), and features such as caching or metrics wrap a
//! store rather than widen the traits. Every backend must pass the shared
//! `conformance` suite (built with the `test-support` feature, like the
//! `moto` harness for S3 tests). One optional capability has a default that says
//! "unsupported": building a blob from chunks already in the store
//! ([`BlobStore::assemble`], see [`assemble`]), which spares a second
//! transfer of a large file's bytes where the backend can do it. Another
//! answers whether whole subtrees are present ([`BlobStore::has_closures`],
//! see [`closure`]), which spares a copy questions about every blob below
//! them.
//!
//! Backends: [`MemoryStore`] (tests, simulation), [`FsStore`] (a local
//! directory, the embedded default), [`s3::S3Store`] and
//! [`http::HttpStore`] (a `cairn server`); a URL picks one, and
//! [`connect`] opens and checks it. Every error says its [`ErrorKind`].

pub mod assemble;
pub mod blob;
pub mod closure;
#[cfg(feature = "test-support")]
pub mod conformance;
pub mod dangling;
pub mod error;
pub mod fs;
pub mod gc;
pub mod http;
pub mod memory;
#[cfg(feature = "test-support")]
pub mod moto;
pub mod reach;
pub mod refs;
pub mod roots;
pub mod s3;
mod transport;
mod url;

pub use blob::{Assembled, BlobReader, BlobStore, BlobStoreExt, VerifyingReader};
pub use error::{ErrorKind, RemoteError, Result, StoreError};
pub use fs::{io_pool, FsStore};
pub use memory::MemoryStore;
pub use refs::{IfChanged, RefEvent, RefName, RefStore, RefWatch, Version, Versioned};
pub use url::{connect, redacted, OpenOptions, StoreUrl};

use std::sync::Arc;

/// An opened store: its blobs and its refs, and the local directory behind
/// them when there is one (for operations only a local store can do fast).
#[derive(Clone, Debug)]
pub struct Store {
    /// The blobs.
    pub blobs: Arc<dyn BlobStore>,
    /// The refs.
    pub refs: Arc<dyn RefStore>,
    /// The local directory store, if that is the backend.
    pub local: Option<Arc<FsStore>>,
}

impl Store {
    /// A store backed by a local directory.
    pub fn local(fs: FsStore) -> Self {
        let fs = Arc::new(fs);
        Self {
            blobs: fs.clone(),
            refs: fs.clone(),
            local: Some(fs),
        }
    }

    /// A store held in memory.
    pub fn memory() -> Self {
        let m = Arc::new(MemoryStore::new());
        Self {
            blobs: m.clone(),
            refs: m,
            local: None,
        }
    }
}
