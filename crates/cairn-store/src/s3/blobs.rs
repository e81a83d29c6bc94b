//! Blobs in S3: one object per blob at `blobs/<hex>`.
//!
//! A put never makes unverified bytes visible. Small blobs are read into
//! memory, hashed, and uploaded with one PUT only if they match. Larger ones
//! are streamed into a multipart upload while being hashed, and the upload
//! is completed only if the hash matches (aborted otherwise): S3 shows a
//! multipart object only once it is completed, so a reader never sees a
//! partial or corrupt blob. Reads are wrapped in [`VerifyingReader`].

use async_trait::async_trait;
use cairn_digest::{Digest, Hasher};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::WriteMultipart;
use tokio::io::AsyncReadExt;

use super::S3Store;
use crate::blob::{BlobReader, BlobStore, VerifyingReader};
use crate::error::{Result, StoreError};

/// Blobs up to this size go up in one PUT; larger ones as multipart parts.
const PART_SIZE: usize = 8 << 20;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// HEAD requests in flight for one `has_many`.
const HEADS_IN_FLIGHT: usize = 32;
/// PUT requests in flight for one `put_many`.
const PUTS_IN_FLIGHT: usize = 16;

fn blob_path(digest: &Digest) -> Path {
    Path::from(format!("blobs/{}", digest.hex()))
}

impl S3Store {
    async fn has_one(&self, digest: &Digest) -> Result<bool> {
        match self.objects.head(&blob_path(digest)).await {
            // An object of the wrong length is not this blob.
            Ok(meta) => Ok(meta.size == digest.size()),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(format!("looking for blob {digest}"), e)),
        }
    }

    /// Reads up to `PART_SIZE` bytes (fewer only at the end of the stream).
    async fn read_part(&self, digest: &Digest, data: &mut BlobReader) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(PART_SIZE.min(digest.size() as usize + 1));
        let mut limited = data.take(PART_SIZE as u64);
        limited
            .read_to_end(&mut buf)
            .await
            .map_err(|e| crate::blob::read_error(digest, e))?;
        Ok(buf)
    }

    async fn put_multipart(
        &self,
        digest: &Digest,
        first: Vec<u8>,
        mut data: BlobReader,
        mut hasher: Hasher,
    ) -> Result<()> {
        let path = blob_path(digest);
        let upload = self
            .objects
            .put_multipart(&path)
            .await
            .map_err(|e| self.error(format!("starting upload of blob {digest}"), e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        writer.put(first.into());
        let outcome: Result<()> = async {
            loop {
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| self.error(format!("uploading blob {digest}"), e))?;
                let part = self.read_part(digest, &mut data).await?;
                if part.is_empty() {
                    return Ok(());
                }
                hasher.update(&part);
                if hasher.size() > digest.size() {
                    return Ok(()); // too long: the check below refuses it
                }
                writer.put(part.into());
            }
        }
        .await;
        let actual = hasher.finish();
        if outcome.is_err() || actual != *digest {
            let _ = writer.abort().await;
            outcome?;
            return Err(StoreError::Corrupt {
                expected: *digest,
                actual,
            });
        }
        writer
            .finish()
            .await
            .map_err(|e| self.error(format!("completing upload of blob {digest}"), e))?;
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn has_many(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        let heads: Vec<_> = digests.iter().map(|d| self.has_one(d)).collect();
        futures::stream::iter(heads)
            .buffered(HEADS_IN_FLIGHT)
            .try_collect()
            .await
    }

    async fn lookup(&self, hash: &[u8; 32]) -> Result<Option<Digest>> {
        let probe = Digest::from_parts(*hash, 0);
        match self.objects.head(&blob_path(&probe)).await {
            Ok(meta) => Ok(Some(Digest::from_parts(*hash, meta.size))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(format!("looking up blob sha256:{}", probe.hex()), e)),
        }
    }

    /// Checks every blob first (a mismatch is refused before anything is
    /// sent), then puts them 16 at a time: S3 has no batch
    /// upload, but it has no limit on parallel ones either.
    async fn put_many(&self, blobs: Vec<(Digest, Vec<u8>)>) -> Result<()> {
        for (digest, bytes) in &blobs {
            if !digest.matches(bytes) {
                return Err(StoreError::Corrupt {
                    expected: *digest,
                    actual: Digest::of(bytes),
                });
            }
        }
        let puts = blobs.into_iter().map(|(digest, bytes)| async move {
            let put = self.objects.put(&blob_path(&digest), bytes.into()).await;
            put.map(drop)
                .map_err(|e| self.error(format!("writing blob {digest}"), e))
        });
        futures::stream::iter(puts)
            .buffer_unordered(PUTS_IN_FLIGHT)
            .try_collect()
            .await
    }

    async fn get(&self, digest: &Digest) -> Result<Option<BlobReader>> {
        let got = match self.objects.get(&blob_path(digest)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(format!("reading blob {digest}"), e)),
        };
        if got.meta.size != digest.size() {
            // Another size is another blob (as for `has_many`).
            return Ok(None);
        }
        let stream = got.into_stream().map_err(std::io::Error::other);
        let reader = tokio_util::io::StreamReader::new(stream);
        Ok(Some(Box::pin(VerifyingReader::new(reader, *digest))))
    }

    async fn put(&self, digest: &Digest, mut data: BlobReader) -> Result<()> {
        let first = self.read_part(digest, &mut data).await?;
        let mut hasher = Hasher::new();
        hasher.update(&first);
        if first.len() < PART_SIZE {
            let actual = hasher.finish();
            if actual != *digest {
                return Err(StoreError::Corrupt {
                    expected: *digest,
                    actual,
                });
            }
            self.objects
                .put(&blob_path(digest), first.into())
                .await
                .map_err(|e| self.error(format!("writing blob {digest}"), e))?;
            return Ok(());
        }
        self.put_multipart(digest, first, data, hasher).await
    }
}
