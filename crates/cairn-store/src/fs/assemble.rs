//! Assembling a blob from chunk files the local store already holds.
//!
//! The chunk files are streamed, in order, into the ordinary `put` path:
//! a temp file in `tmp/`, hashed as it is written, renamed to the file's
//! digest only if the whole matches, removed otherwise. Nothing new can
//! become visible half-written, and a list that lies about its file stores
//! nothing. When the whole does not match, each chunk is re-hashed so the
//! error can name a damaged chunk file rather than just the list.

use std::path::PathBuf;

use cairn_digest::Digest;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncReadExt;
use tokio_util::io::{ReaderStream, StreamReader};

use super::maintenance::hash_file;
use super::FsStore;
use crate::assemble::check;
use crate::blob::{BlobReader, BlobStore};
use crate::error::{Result, StoreError};

/// Read size per chunk file.
const READ_BUF: usize = 1 << 20;

impl FsStore {
    /// Stores `file` as the concatenation of the stored `chunks` (see
    /// [`BlobStore::assemble`]): [`StoreError::NotFound`] for the first
    /// chunk absent, [`StoreError::Corrupt`] if the result does not hash to
    /// `file` (naming a damaged chunk if one is), and nothing stored then.
    pub async fn assemble_chunks(&self, file: &Digest, chunks: &[Digest]) -> Result<()> {
        check(file, chunks)?;
        if self.has_sync(file) {
            return Ok(());
        }
        if let Some(absent) = chunks.iter().find(|c| !self.has_sync(c)) {
            return Err(StoreError::NotFound(*absent));
        }
        let files: Vec<(PathBuf, u64)> = chunks
            .iter()
            .map(|c| (self.blob_path(c), c.size()))
            .collect();
        let stream = futures::stream::iter(files)
            .then(|(path, size)| async move {
                let f = tokio::fs::File::open(&path).await?;
                // One byte past the size, so an overlong chunk file shows
                // up as a mismatch of the whole.
                Ok::<_, std::io::Error>(ReaderStream::with_capacity(f.take(size + 1), READ_BUF))
            })
            .try_flatten();
        let data: BlobReader = Box::pin(StreamReader::new(stream));
        match BlobStore::put(self, file, data).await {
            Err(StoreError::Corrupt { expected, actual }) if expected == *file => Err(self
                .damaged_chunk(chunks)
                .await
                .unwrap_or(StoreError::Corrupt { expected, actual })),
            other => other,
        }
    }

    /// The first chunk whose file does not hash to its name, as an error.
    async fn damaged_chunk(&self, chunks: &[Digest]) -> Option<StoreError> {
        let files: Vec<(PathBuf, Digest)> =
            chunks.iter().map(|c| (self.blob_path(c), *c)).collect();
        let found = tokio::task::spawn_blocking(move || {
            files.into_iter().find_map(|(path, chunk)| {
                let actual = hash_file(&path, chunk.size()).ok()?;
                (actual != chunk).then_some(StoreError::Corrupt {
                    expected: chunk,
                    actual,
                })
            })
        });
        found.await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobStoreExt;

    const CHUNK_A: &[u8] = b"the first chunk, ";
    const CHUNK_B: &[u8] = b"and the second";

    fn whole() -> Vec<u8> {
        [CHUNK_A, CHUNK_B].concat()
    }

    fn store() -> (tempfile::TempDir, FsStore) {
        let dir = tempfile::tempdir().unwrap();
        let fs = FsStore::open(dir.path().join("store")).unwrap();
        (dir, fs)
    }

    fn tmp_files(fs: &FsStore) -> usize {
        std::fs::read_dir(fs.root().join("tmp")).unwrap().count()
    }

    #[tokio::test]
    async fn concatenates_stored_chunks() {
        let (_dir, fs) = store();
        let a = fs.put_bytes_sync(CHUNK_A).unwrap();
        let b = fs.put_bytes_sync(CHUNK_B).unwrap();
        let file = Digest::of(&whole());
        fs.assemble_chunks(&file, &[a, b]).await.unwrap();
        assert_eq!(fs.get_bytes(&file).await.unwrap(), whole());
        // Idempotent, and a read-only blob like any other.
        fs.assemble_chunks(&file, &[a, b]).await.unwrap();
        assert_eq!(tmp_files(&fs), 0);
    }

    #[tokio::test]
    async fn refuses_a_list_that_lies_and_stores_nothing() {
        let (_dir, fs) = store();
        let a = fs.put_bytes_sync(CHUNK_A).unwrap();
        let b = fs.put_bytes_sync(CHUNK_B).unwrap();
        let swapped = Digest::of(&[CHUNK_B, CHUNK_A].concat());
        let err = fs.assemble_chunks(&swapped, &[a, b]).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { expected, .. } if expected == swapped),
            "{err:?}"
        );
        assert!(!fs.has_sync(&swapped));

        let short = Digest::of(CHUNK_A);
        let err = fs.assemble_chunks(&short, &[a, b]).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");

        let absent = Digest::of(b"never stored");
        let file = Digest::of(&[CHUNK_A, b"never stored"].concat());
        let err = fs.assemble_chunks(&file, &[a, absent]).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound(d) if d == absent),
            "{err:?}"
        );
        assert!(!fs.has_sync(&file));
        assert_eq!(tmp_files(&fs), 0);
    }

    #[tokio::test]
    async fn names_a_damaged_chunk() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, fs) = store();
        let a = fs.put_bytes_sync(CHUNK_A).unwrap();
        let b = fs.put_bytes_sync(CHUNK_B).unwrap();
        let path = fs.blob_path(&b);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, b"AND THE SECOND").unwrap();
        let file = Digest::of(&whole());
        let err = fs.assemble_chunks(&file, &[a, b]).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { expected, .. } if expected == b),
            "{err:?}"
        );
        assert!(!fs.has_sync(&file));
    }
}
