//! Where an export reads a tree from: a small synchronous trait, so the
//! tar writer is plain blocking code testable on an in-memory tree, and one
//! implementation over any [`BlobStore`] for the real thing.

use std::io::{self, Read};
use std::sync::Arc;

use cairn_digest::Digest;
use cairn_store::{BlobStore, BlobStoreExt};
use cairn_tree::proto::Directory;
use tokio::runtime::Handle;
use tokio_util::io::SyncIoBridge;

use crate::error::ExportError;

/// Directories and file contents of trees, read synchronously.
pub trait TreeSource: Send + Sync {
    /// The decoded directory `digest` names.
    fn directory(&self, digest: &Digest) -> Result<Directory, ExportError>;
    /// The verified contents of file `digest`.
    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>>;
}

/// A [`TreeSource`] over a [`BlobStore`], for use on a blocking thread
/// (`spawn_blocking`): it waits for the store's async reads on `handle`.
#[derive(Clone, Debug)]
pub struct StoreSource {
    blobs: Arc<dyn BlobStore>,
    handle: Handle,
}

impl StoreSource {
    /// Reads from `blobs`, driving its futures on `handle`.
    pub fn new(blobs: Arc<dyn BlobStore>, handle: Handle) -> Self {
        Self { blobs, handle }
    }
}

impl TreeSource for StoreSource {
    fn directory(&self, digest: &Digest) -> Result<Directory, ExportError> {
        let bytes = self
            .handle
            .block_on(self.blobs.get_bytes(digest))
            .map_err(|e| ExportError::Source {
                what: format!("directory {digest}"),
                source: io::Error::other(e),
            })?;
        cairn_tree::decode_directory(&bytes).map_err(|source| ExportError::Tree {
            digest: *digest,
            source,
        })
    }

    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        let reader = self
            .handle
            .block_on(self.blobs.get(digest))
            .map_err(io::Error::other)?
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("blob {digest} is missing"))
            })?;
        Ok(Box::new(SyncIoBridge::new_with_handle(
            reader,
            self.handle.clone(),
        )))
    }
}
