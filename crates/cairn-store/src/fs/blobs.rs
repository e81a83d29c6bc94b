//! Blob reads and writes of the local store.
//!
//! The synchronous methods are what snapshotting uses from its worker
//! threads; the [`BlobStore`] impl wraps them for async callers.
//!
//! A file is read exactly once on the way in: its bytes are hashed and
//! written to a temp file as they are read, and the temp file is renamed to
//! the digest's name at the end. Large files overlap hashing with writing on
//! a second thread, so adding a file costs about as much as hashing it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use async_trait::async_trait;
use cairn_digest::Digest;

use super::FsStore;
use crate::blob::{read_error, Assembled, BlobReader, BlobStore, VerifyingReader};
use crate::error::{Result, StoreError};
use crate::reach::Kind;

/// Blobs up to this size are read whole by `get` instead of streamed.
const SMALL_BLOB: u64 = 64 << 10;

impl FsStore {
    /// Whether the blob is present with the right size. (Content is checked
    /// on every read; a size check here catches truncation for free.)
    pub fn has_sync(&self, digest: &Digest) -> bool {
        std::fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.len() == digest.size())
    }

    /// The full digest of the blob with this hash, from its file's length;
    /// `None` if absent.
    pub fn lookup_sync(&self, hash: &[u8; 32]) -> Result<Option<Digest>> {
        let path = self.blob_path(&Digest::from_parts(*hash, 0));
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(Digest::from_parts(*hash, m.len()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("looking up", path, e)),
        }
    }

    /// Opens a blob for reading, unverified; `None` if absent.
    pub fn open_blob(&self, digest: &Digest) -> Result<Option<File>> {
        let path = self.blob_path(digest);
        match File::open(&path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("opening", path, e)),
        }
    }

    /// Whether the blob is present, claiming it if it is (see
    /// [`claim`](Self::claim)): the question a writer asks before reusing
    /// a blob instead of writing it.
    pub fn reuse_sync(&self, digest: &Digest) -> Result<bool> {
        match self.found(digest) {
            None => return Ok(false),
            Some(true) => return Ok(true), // its own age keeps it
            Some(false) => {}
        }
        self.claim(&[(*digest, Kind::Leaf)])?;
        // Present after the claim: no collection deletes it now.
        Ok(self.has_sync(digest))
    }

    /// Stores many blobs held in memory, in order: those already stored
    /// are kept (and those not written recently claimed, in one batch).
    pub fn put_bytes_many_sync(&self, blobs: &[Vec<u8>]) -> Result<Vec<Digest>> {
        let digests: Vec<Digest> = blobs.iter().map(|b| Digest::of(b)).collect();
        self.put_hashed_many_sync(&digests, blobs)?;
        Ok(digests)
    }

    /// [`put_bytes_many_sync`](Self::put_bytes_many_sync) for blobs whose
    /// digests the caller already computed (`digests[i]` is the digest of
    /// `blobs[i]`): no second hashing pass.
    pub fn put_hashed_many_sync(&self, digests: &[Digest], blobs: &[Vec<u8>]) -> Result<()> {
        debug_assert!(digests.iter().zip(blobs).all(|(d, b)| d.matches(b)));
        let kept = self.keep_found(digests)?;
        for ((digest, bytes), kept) in digests.iter().zip(blobs).zip(kept) {
            if !kept {
                self.write_new(digest, |file, path| {
                    file.write_all(bytes)
                        .map_err(|e| StoreError::io("writing", path, e))
                })?;
            }
        }
        Ok(())
    }

    /// Whether every one of these blobs is stored whole, claiming those
    /// not written recently (in one batch): what a writer asks before
    /// reusing blobs it stored before instead of writing them again.
    pub fn keep_many_sync(&self, digests: &[Digest]) -> Result<bool> {
        Ok(self.keep_found(digests)?.into_iter().all(|kept| kept))
    }

    /// For each blob, whether it is stored whole and safe from a
    /// collection (written recently, or claimed here and present after).
    fn keep_found(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        let found: Vec<Option<bool>> = digests.iter().map(|d| self.found(d)).collect();
        let old: Vec<(Digest, Kind)> = digests
            .iter()
            .zip(&found)
            .filter(|(_, f)| **f == Some(false))
            .map(|(d, _)| (*d, Kind::Leaf))
            .collect();
        if !old.is_empty() {
            self.claim(&old)?;
        }
        // Present after the claim (or young): no collection deletes it now.
        Ok(digests
            .iter()
            .zip(found)
            .map(|(digest, found)| match found {
                Some(true) => true,
                Some(false) => self.has_sync(digest),
                None => false,
            })
            .collect())
    }

    /// Whether a blob is stored whole, and if so whether it was written
    /// less than a claim slot ago (its own age keeps it then).
    fn found(&self, digest: &Digest) -> Option<bool> {
        let st = self.blob_stat(digest).ok().flatten()?;
        if st.st_size as u64 != digest.size() {
            return None;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Some(now - st.st_mtime < super::claims::CLAIM_SLOT.as_secs() as i64)
    }

    /// Stores bytes held in memory.
    pub fn put_bytes_sync(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if !self.reuse_sync(&digest)? {
            self.write_new(&digest, |file, path| {
                file.write_all(bytes)
                    .map_err(|e| StoreError::io("writing", path, e))
            })?;
        }
        Ok(digest)
    }

    /// Stores a file's content, reading it once; returns its digest. A blob
    /// already stored under that digest is kept (and claimed).
    pub fn put_file(&self, source: &Path) -> Result<Digest> {
        self.store_file(source, Put::Keep)
    }

    /// Stores a file's content, replacing the blob file even if one is
    /// there: the repair of a blob whose file was found changed.
    pub fn replace_file(&self, source: &Path) -> Result<Digest> {
        self.store_file(source, Put::Replace)
    }

    /// [`put_file`](Self::put_file), and durable when it returns: a new
    /// blob file's data is flushed (`fdatasync`) before it is renamed into
    /// place and its shard directory after, so a single file costs two
    /// flushes of its own instead of a [`sync`](Self::sync) of the whole
    /// file system (which also waits for every other writer's dirty data).
    /// A blob found already stored is kept as it is.
    pub fn put_file_durable(&self, source: &Path) -> Result<Digest> {
        self.store_file(source, Put::Durable)
    }

    fn store_file(&self, source: &Path, how: Put) -> Result<Digest> {
        let mut src = File::open(source).map_err(|e| StoreError::io("opening", source, e))?;
        let len = src
            .metadata()
            .map_err(|e| StoreError::io("reading metadata of", source, e))?
            .len();
        let (tmp, mut out) = self.create_tmp()?;
        let copied = super::copy::copy_and_hash(&mut src, &mut out, source, &tmp, len);
        let digest = match copied {
            Ok(d) => d,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if how != Put::Replace && self.reuse_sync(&digest)? {
            let _ = std::fs::remove_file(&tmp);
            return Ok(digest);
        }
        if how == Put::Durable {
            if let Err(e) = out.sync_data() {
                let _ = std::fs::remove_file(&tmp);
                return Err(StoreError::io("flushing", &tmp, e));
            }
            self.rename_tmp(&tmp, &digest)?;
            drop(out);
            return self.sync_shard(&digest);
        }
        // `out` (and its lock) lives until the temp file has its name.
        self.commit_tmp(&tmp, &digest)?;
        drop(out);
        Ok(digest)
    }

    /// Flushes the directory entry of a blob just renamed into place.
    fn sync_shard(&self, digest: &Digest) -> Result<Digest> {
        let path = self.blob_path(digest);
        let shard = path.parent().expect("blob files are in a shard");
        File::open(shard)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| StoreError::io("flushing", shard, e))?;
        Ok(*digest)
    }

    /// Writes a blob whose digest is known into a temp file, then renames.
    fn write_new(
        &self,
        digest: &Digest,
        fill: impl FnOnce(&mut File, &Path) -> Result<()>,
    ) -> Result<()> {
        let (tmp, mut file) = self.create_tmp()?;
        if let Err(e) = fill(&mut file, &tmp) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.commit_tmp(&tmp, digest)
    }

    /// Renames a complete temp file to its digest's name, holding
    /// `gc.lock` shared so that no collection decides on the old name's age
    /// in between. Replacing an existing copy (another writer won the
    /// race) is harmless: the bytes are the same.
    fn commit_tmp(&self, tmp: &Path, digest: &Digest) -> Result<()> {
        self.rename_tmp(tmp, digest)?;
        self.note_blob_written();
        Ok(())
    }

    /// [`commit_tmp`](Self::commit_tmp) without noting a write for the
    /// next [`sync_written`](Self::sync_written) (the caller flushes it).
    fn rename_tmp(&self, tmp: &Path, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        self.claims.shared(|| {
            std::fs::rename(tmp, &dest).map_err(|e| {
                let _ = std::fs::remove_file(tmp);
                StoreError::io("renaming into", &dest, e)
            })
        })
    }

    /// A new temp file in `tmp/`, read-only from birth (the open
    /// descriptor can still write) and locked while this writer lives.
    fn create_tmp(&self) -> Result<(std::path::PathBuf, File)> {
        super::temp::create_locked_file(|| self.tmp_path(), 0o444)
    }
}

/// How [`FsStore::store_file`] treats the blob it computed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Put {
    /// Keep a blob already stored; a new one is made durable by the next
    /// [`FsStore::sync`].
    Keep,
    /// Write the blob file even if one is there.
    Replace,
    /// Keep a blob already stored; flush a new one before returning.
    Durable,
}

#[async_trait]
impl BlobStore for FsStore {
    /// The question a copy asks before skipping a blob: what is present is
    /// claimed (see [`FsStore::claim`]), so it stays while the copy writes
    /// what names it.
    async fn has_many(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        let present: Vec<(Digest, Kind)> = digests
            .iter()
            .filter(|d| self.has_sync(d))
            .map(|d| (*d, Kind::Leaf))
            .collect();
        if present.is_empty() {
            return Ok(vec![false; digests.len()]);
        }
        self.claim(&present)?;
        Ok(digests.iter().map(|d| self.has_sync(d)).collect())
    }

    async fn get(&self, digest: &Digest) -> Result<Option<BlobReader>> {
        if digest.size() <= SMALL_BLOB {
            // One trip through the blocking pool for open, read and close:
            // cheaper than a stream whose every poll is a trip (most blobs
            // are small), and a cold read never stalls a runtime thread.
            // Verification stays with the reader, as for a stream.
            let (path, size) = (self.blob_path(digest), digest.size());
            let bytes = tokio::task::spawn_blocking(move || read_whole(&path, size))
                .await
                .map_err(|e| {
                    StoreError::io("reading", self.blob_path(digest), io::Error::other(e))
                })??;
            // A file of another length is not this blob (as for `has`).
            let bytes = bytes.filter(|b| b.len() as u64 == digest.size());
            return Ok(bytes.map(|bytes| {
                Box::pin(VerifyingReader::new(std::io::Cursor::new(bytes), *digest)) as BlobReader
            }));
        }
        let file = self
            .open_blob(digest)?
            .filter(|f| f.metadata().is_ok_and(|m| m.len() == digest.size()));
        Ok(file.map(|f| {
            let file = tokio::fs::File::from_std(f);
            Box::pin(VerifyingReader::new(file, *digest)) as BlobReader
        }))
    }

    async fn put(&self, digest: &Digest, data: BlobReader) -> Result<()> {
        if self.reuse_sync(digest)? {
            return Ok(());
        }
        let (tmp, file) = self.create_tmp()?;
        let mut out = tokio::fs::File::from_std(file);
        let mut verified = VerifyingReader::new(data, *digest);
        let copied = tokio::io::copy(&mut verified, &mut out).await;
        let flushed = match copied {
            Ok(_) => tokio::io::AsyncWriteExt::flush(&mut out).await,
            Err(e) => Err(e),
        };
        let _held = out.into_std().await;
        if let Err(e) = flushed {
            let _ = std::fs::remove_file(&tmp);
            return Err(match e.kind() {
                io::ErrorKind::InvalidData => read_error(digest, e),
                _ => StoreError::io("writing", &tmp, e),
            });
        }
        self.commit_tmp(&tmp, digest)
    }

    async fn flush(&self) -> Result<()> {
        self.sync()
    }

    async fn lookup(&self, hash: &[u8; 32]) -> Result<Option<Digest>> {
        self.lookup_sync(hash)
    }

    /// Claims the roots first (a claimed tree keeps all it reaches), so a
    /// closure found whole stays whole while the copy relies on it.
    async fn has_closures(&self, roots: &[(Digest, Kind)]) -> Result<Option<Vec<bool>>> {
        self.claim(roots)?;
        crate::closure::has_closures(self, roots).await.map(Some)
    }

    async fn assemble(&self, file: &Digest, chunks: &[Digest]) -> Result<Assembled> {
        self.assemble_chunks(file, chunks)
            .await
            .map(|()| Assembled::Stored)
    }
}

impl FsStore {
    /// Reads a whole blob, verified; `None` if absent.
    pub fn read_blob_sync(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let Some(bytes) = self.read_whole(digest)? else {
            return Ok(None);
        };
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::Corrupt {
                expected: *digest,
                actual,
            });
        }
        Ok(Some(bytes))
    }

    /// Reads a whole blob as stored, unverified; `None` if absent.
    fn read_whole(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        read_whole(&self.blob_path(digest), digest.size())
    }
}

/// Reads the file at `path`, expected to hold `size` bytes; `None` if absent.
fn read_whole(path: &Path, size: u64) -> Result<Option<Vec<u8>>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("opening", path, e)),
    };
    // One byte of headroom so a blob longer than its digest says is read
    // in one allocation and caught by verification; never more, whatever
    // the file holds: a reader naming a large blob's hash with a small
    // size would otherwise have the whole file read into memory.
    let mut bytes = Vec::with_capacity(size as usize + 1);
    (&mut f)
        .take(size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::io("reading", path, e))?;
    Ok(Some(bytes))
}
