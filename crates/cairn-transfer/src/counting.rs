//! [`CountingStore`]: a decorator that counts what is put through it, to
//! measure how much a copy really moved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use cairn_digest::Digest;
use cairn_store::reach::Kind;
use cairn_store::{Assembled, BlobReader, BlobStore, Result};

/// Wraps a [`BlobStore`] and counts the blobs put through it and the bytes
/// they claimed (each blob's digest size, counted whether or not it was
/// stored), by `put` or in a `put_many` batch. Every method is passed
/// through as itself, so the wrapped store still batches, assembles and
/// answers closure questions; assembly from stored chunks is uncounted.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn BlobStore>,
    puts: AtomicU64,
    bytes: AtomicU64,
}

impl CountingStore {
    /// Counts puts into `inner`.
    pub fn new(inner: Arc<dyn BlobStore>) -> Self {
        Self {
            inner,
            puts: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Blobs put so far.
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }

    /// Bytes put so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Starts counting from zero again.
    pub fn reset(&self) {
        self.puts.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
    }
}

#[async_trait]
impl BlobStore for CountingStore {
    async fn has_many(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        self.inner.has_many(digests).await
    }

    async fn get(&self, digest: &Digest) -> Result<Option<BlobReader>> {
        self.inner.get(digest).await
    }

    async fn put(&self, digest: &Digest, data: BlobReader) -> Result<()> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(digest.size(), Ordering::Relaxed);
        self.inner.put(digest, data).await
    }

    async fn put_many(&self, blobs: Vec<(Digest, Vec<u8>)>) -> Result<()> {
        let bytes: u64 = blobs.iter().map(|(d, _)| d.size()).sum();
        self.puts.fetch_add(blobs.len() as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.inner.put_many(blobs).await
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    async fn has_closures(&self, roots: &[(Digest, Kind)]) -> Result<Option<Vec<bool>>> {
        self.inner.has_closures(roots).await
    }

    async fn lookup(&self, hash: &[u8; 32]) -> Result<Option<Digest>> {
        self.inner.lookup(hash).await
    }

    /// Not a put: the bytes are already in the store, so nothing is counted.
    async fn assemble(&self, file: &Digest, chunks: &[Digest]) -> Result<Assembled> {
        self.inner.assemble(file, chunks).await
    }
}
