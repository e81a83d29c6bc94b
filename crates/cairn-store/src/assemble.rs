//! Assembling a blob from chunks a store already holds.
//!
//! Large files travel between stores as content-defined chunks (see the
//! `cairn-transfer` crate), after which the destination still needs the
//! whole file under its own digest. [`BlobStore::assemble`] lets a backend
//! build it where the chunks already are — the local store concatenates
//! chunk files, a `cairn server` does the same behind
//! `POST /v1/assemble/<hex>/<size>` — so the file's bytes do not travel a
//! second time. This module holds what every implementation shares: the
//! checks a chunk list must pass before any work is done ([`check`]), and
//! the fallback for backends that cannot assemble ([`by_copy`]).

use std::sync::Arc;

use bytes::Bytes;
use cairn_digest::Digest;
use futures::StreamExt;

use crate::blob::{BlobReader, BlobStore, BlobStoreExt};
use crate::error::{Result, StoreError};

/// The most chunks one assembly may name: about 10 MB of JSON on the wire,
/// and a file of some 25 GB at the usual 256 KiB average chunk. Larger
/// files are put whole.
pub const MAX_CHUNKS: usize = 100_000;

/// Chunks read ahead by [`by_copy`] while the previous ones are written.
const READ_AHEAD: usize = 4;

/// Refuses a chunk list that cannot describe `file`: more than
/// [`MAX_CHUNKS`] chunks, or sizes that do not add up to the file's.
/// (Whether the bytes hash to `file` is known only after assembling.)
pub fn check(file: &Digest, chunks: &[Digest]) -> Result<()> {
    let bad = |reason: String| StoreError::Invalid {
        what: format!("chunk list for {file}"),
        reason,
    };
    if chunks.len() > MAX_CHUNKS {
        return Err(bad(format!(
            "{} chunks exceed the limit of {MAX_CHUNKS}",
            chunks.len()
        )));
    }
    let total = chunks
        .iter()
        .try_fold(0u64, |sum, c| sum.checked_add(c.size()))
        .ok_or_else(|| bad("chunk sizes overflow".into()))?;
    if total != file.size() {
        return Err(bad(format!(
            "chunks add up to {total} bytes, the file has {}",
            file.size()
        )));
    }
    Ok(())
}

/// The first of `chunks` that `store` lacks, as [`StoreError::NotFound`].
pub async fn require_chunks(store: &dyn BlobStore, chunks: &[Digest]) -> Result<()> {
    let have = store.has_many(chunks).await?;
    match have.iter().position(|h| !h) {
        Some(i) => Err(StoreError::NotFound(chunks[i])),
        None => Ok(()),
    }
}

/// Assembles `file` the slow way, for a store whose [`BlobStore::assemble`]
/// is unsupported: reads the chunks back from `store` and puts their
/// concatenation, which `put` verifies. Same errors as `assemble`, except
/// that a chunk failing to read mid-way is reported as a backend error.
pub async fn by_copy(store: Arc<dyn BlobStore>, file: &Digest, chunks: &[Digest]) -> Result<()> {
    check(file, chunks)?;
    if store.has(file).await? {
        return Ok(());
    }
    require_chunks(store.as_ref(), chunks).await?;
    let reader = store.clone();
    let stream = futures::stream::iter(chunks.to_vec())
        .map(move |d| {
            let reader = reader.clone();
            async move {
                reader
                    .get_bytes(&d)
                    .await
                    .map(Bytes::from)
                    .map_err(std::io::Error::other)
            }
        })
        .buffered(READ_AHEAD);
    let data: BlobReader = Box::pin(tokio_util::io::StreamReader::new(stream));
    store.put(file, data).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_must_add_up() {
        let a = Digest::of(b"ab");
        let b = Digest::of(b"cde");
        let file = Digest::of(b"abcde");
        assert!(check(&file, &[a, b]).is_ok());
        assert!(check(&file, &[a]).is_err(), "short");
        assert!(check(&file, &[a, b, a]).is_err(), "long");
        assert!(check(&Digest::empty(), &[]).is_ok());
    }

    #[test]
    fn absurd_lists_are_refused() {
        let one = Digest::of(b"x");
        let many = vec![one; MAX_CHUNKS + 1];
        let file = Digest::from_hex(&"00".repeat(32), (MAX_CHUNKS + 1) as u64).unwrap();
        let err = check(&file, &many).unwrap_err().to_string();
        assert!(err.contains("exceed the limit"), "{err}");
        let huge = Digest::from_hex(&"00".repeat(32), u64::MAX).unwrap();
        assert!(check(&file, &[huge, huge]).is_err(), "overflow");
    }

    #[tokio::test]
    async fn by_copy_concatenates_and_verifies() {
        let store: Arc<dyn BlobStore> = Arc::new(crate::MemoryStore::new());
        let a = store.put_bytes(b"ab".to_vec()).await.unwrap();
        let b = store.put_bytes(b"cde".to_vec()).await.unwrap();
        let file = Digest::of(b"abcde");
        by_copy(store.clone(), &file, &[a, b]).await.unwrap();
        assert_eq!(store.get_bytes(&file).await.unwrap(), b"abcde");

        let other = Digest::of(b"cdeab");
        let err = by_copy(store.clone(), &other, &[a, b]).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(!store.has(&other).await.unwrap());

        let absent = Digest::of(b"zz");
        let err = by_copy(store.clone(), &Digest::of(b"abzz"), &[a, absent])
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(d) if d == absent),
            "{err:?}"
        );
    }
}
