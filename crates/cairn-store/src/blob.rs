//! Blobs: immutable bytes named by their digest.
//!
//! [`BlobStore`] has the three operations every backend must provide. All
//! reads are verified: [`VerifyingReader`] hashes the stream as it passes and
//! fails at the end if the bytes are not those the digest names, so a caller
//! can never consume a corrupt blob as good. Writes are verified too: a
//! backend stores nothing under a digest its bytes do not hash to.
//!
//! Many small blobs can be stored at once with
//! [`BlobStore::put_many`]; over HTTP that is one request per [`batch`]
//! instead of one per blob.

pub mod batch;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use cairn_digest::{Digest, Hasher};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::error::{Result, StoreError};
use crate::reach::Kind;

/// A stream of blob bytes.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

/// Immutable, content-addressed bytes.
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// For each digest, whether the store holds it (same order as asked).
    async fn has_many(&self, digests: &[Digest]) -> Result<Vec<bool>>;

    /// Streams a blob, or `None` if absent. A blob with `digest`'s hash
    /// but another size is absent, as for [`has_many`](Self::has_many).
    /// The stream fails with `InvalidData` at its end if the bytes do not
    /// match `digest`.
    async fn get(&self, digest: &Digest) -> Result<Option<BlobReader>>;

    /// Stores `data` under `digest`, atomically; idempotent. Fails with
    /// [`StoreError::Corrupt`] (storing nothing) if the bytes do not match.
    async fn put(&self, digest: &Digest, data: BlobReader) -> Result<()>;

    /// The full digest of the blob whose hash is `hash`, if the store
    /// holds it: how a digest written without its size (`sha256:<hex>`,
    /// as cairn prints digests) becomes one that can be read and verified.
    /// The size comes from the backend's own record of the blob (a file's
    /// length, an object's `Content-Length`); the bytes are still verified
    /// against the whole digest when read.
    ///
    /// The default, for stores that are addressed by full digest only,
    /// fails saying so; every backend of this crate answers. Decorators
    /// forward.
    async fn lookup(&self, hash: &[u8; 32]) -> Result<Option<Digest>> {
        Err(StoreError::Invalid {
            what: format!("looking up sha256:{}", Digest::from_parts(*hash, 0).hex()),
            reason: "this store cannot find a blob by its hash alone; \
                     write the digest with its size (sha256:<hex>/<size>)"
                .into(),
        })
    }

    /// Stores many blobs held in memory, each as [`put`](Self::put) would.
    /// Fails with [`StoreError::Corrupt`] naming the first blob whose bytes
    /// do not match its digest; that blob is not stored, while others of
    /// the same call may be (blobs are immutable, so a partial success
    /// harms nobody and a retry finishes it).
    ///
    /// The default puts one at a time, in order; backends that can send
    /// many blobs in one round trip (HTTP) override it.
    async fn put_many(&self, blobs: Vec<(Digest, Vec<u8>)>) -> Result<()> {
        for (digest, bytes) in blobs {
            self.put(&digest, Box::pin(io::Cursor::new(bytes))).await?;
        }
        Ok(())
    }

    /// Makes every blob put so far durable. Backends whose puts are durable
    /// when they return need not override this.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// For each of `roots`, whether the store holds it together with
    /// everything it reaches ([`crate::closure`]), for a caller that would
    /// otherwise ask [`has_many`](Self::has_many) about every blob below
    /// them. `None`: this backend cannot answer more cheaply than that
    /// (the default; S3 would have to ask about every blob itself).
    /// Decorators forward.
    async fn has_closures(&self, roots: &[(Digest, Kind)]) -> Result<Option<Vec<bool>>> {
        let _ = roots;
        Ok(None)
    }

    /// Stores `file` as the concatenation of `chunks`, blobs the store
    /// already holds, without the bytes passing through the caller; as
    /// verified and atomic as [`put`](Self::put). Fails with
    /// [`StoreError::NotFound`] naming the first chunk the store lacks, and
    /// with [`StoreError::Corrupt`] (storing nothing) if the concatenation
    /// does not hash to `file`.
    ///
    /// The default, for backends that cannot do better than the caller,
    /// answers [`Assembled::Unsupported`]; the caller then reads the chunks
    /// and puts the whole ([`crate::assemble::by_copy`]). Decorators forward.
    async fn assemble(&self, file: &Digest, chunks: &[Digest]) -> Result<Assembled> {
        let _ = (file, chunks);
        Ok(Assembled::Unsupported)
    }
}

/// What [`BlobStore::assemble`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assembled {
    /// The file is in the store (assembled now, or already there).
    Stored,
    /// This backend cannot assemble; nothing was done.
    Unsupported,
}

/// Conveniences over any [`BlobStore`].
#[async_trait]
pub trait BlobStoreExt: BlobStore {
    /// Whether one blob is present.
    async fn has(&self, digest: &Digest) -> Result<bool> {
        Ok(self.has_many(std::slice::from_ref(digest)).await?[0])
    }

    /// A whole blob in memory, verified; [`StoreError::NotFound`] if absent.
    async fn get_bytes(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut reader = self
            .get(digest)
            .await?
            .ok_or(StoreError::NotFound(*digest))?;
        let mut bytes = Vec::with_capacity(digest.size().min(64 << 20) as usize);
        reader
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| read_error(digest, e))?;
        Ok(bytes)
    }

    /// Stores bytes held in memory and returns their digest.
    async fn put_bytes(&self, bytes: Vec<u8>) -> Result<Digest> {
        let digest = Digest::of(&bytes);
        self.put(&digest, Box::pin(io::Cursor::new(bytes))).await?;
        Ok(digest)
    }
}

impl<T: BlobStore + ?Sized> BlobStoreExt for T {}

/// Turns a failed verified read back into the store error it stands for.
pub fn read_error(digest: &Digest, e: io::Error) -> StoreError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Mismatch>())
    {
        Some(m) => StoreError::Corrupt {
            expected: *digest,
            actual: m.actual,
        },
        None => StoreError::Read {
            digest: *digest,
            source: e,
        },
    }
}

/// The error inside the `io::Error` a [`VerifyingReader`] fails with.
#[derive(Debug, thiserror::Error)]
#[error("blob {expected} is corrupt: its bytes hash to {actual:#}")]
pub struct Mismatch {
    /// What the bytes should hash to.
    pub expected: Digest,
    /// What they hash to (of the bytes seen so far, if too long).
    pub actual: Digest,
}

/// Wraps a reader and fails at its end unless the bytes match the digest.
pub struct VerifyingReader<R> {
    inner: R,
    expected: Digest,
    hasher: Option<Hasher>,
}

impl<R> VerifyingReader<R> {
    /// Verifies `inner` against `expected`.
    pub fn new(inner: R, expected: Digest) -> Self {
        Self {
            inner,
            expected,
            hasher: Some(Hasher::new()),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for VerifyingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        futures::ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        let expected = self.expected;
        let Some(hasher) = self.hasher.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        hasher.update(new);
        let too_long = hasher.size() > expected.size();
        if new.is_empty() || too_long {
            let actual = self.hasher.take().expect("checked above").finish();
            if actual != expected {
                // An error must not come with bytes (AsyncRead's contract).
                buf.set_filled(before);
                let m = Mismatch { expected, actual };
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, m)));
            }
        }
        Poll::Ready(Ok(()))
    }
}
