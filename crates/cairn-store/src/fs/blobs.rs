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
use cairn_digest::{Digest, Hasher};

use super::FsStore;
use crate::blob::{read_error, Assembled, BlobReader, BlobStore, VerifyingReader};
use crate::error::{Result, StoreError};
use crate::reach::Kind;

/// Files at least this large are copied with hashing and writing overlapped.
const PIPELINE_THRESHOLD: u64 = 8 << 20;
const CHUNK: usize = 1 << 20;
/// Blobs up to this size are read whole by `get` instead of streamed.
const SMALL_BLOB: u64 = 64 << 10;
/// Bytes a large blob's writer lets accumulate before starting their
/// writeback ([`start_writeback`]).
const WRITEBACK_STEP: u64 = 16 << 20;
/// Chunks in flight between the hashing and the writing thread (memory bound).
const CHUNKS_IN_FLIGHT: usize = 8;

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
        let Ok(meta) = std::fs::metadata(self.blob_path(digest)) else {
            return Ok(false);
        };
        if meta.len() != digest.size() {
            return Ok(false);
        }
        // Written less than a claim slot ago: its own age keeps it.
        let age = meta.modified().ok().and_then(|m| m.elapsed().ok());
        if age.is_some_and(|a| a < super::claims::CLAIM_SLOT) {
            return Ok(true);
        }
        self.claim(&[(*digest, Kind::Leaf)])?;
        // Present after the claim: no collection deletes it now.
        Ok(self.has_sync(digest))
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
        self.store_file(source, false)
    }

    /// Stores a file's content, replacing the blob file even if one is
    /// there: the repair of a blob whose file was found changed.
    pub fn replace_file(&self, source: &Path) -> Result<Digest> {
        self.store_file(source, true)
    }

    fn store_file(&self, source: &Path, replace: bool) -> Result<Digest> {
        let mut src = File::open(source).map_err(|e| StoreError::io("opening", source, e))?;
        let len = src
            .metadata()
            .map_err(|e| StoreError::io("reading metadata of", source, e))?
            .len();
        let (tmp, mut out) = self.create_tmp()?;
        let copied = if len >= PIPELINE_THRESHOLD {
            copy_pipelined(&mut src, &mut out, source, &tmp)
        } else {
            copy_hashing(&mut src, &mut out, source, &tmp, len)
        };
        let digest = match copied {
            Ok(d) => d,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if !replace && self.reuse_sync(&digest)? {
            let _ = std::fs::remove_file(&tmp);
            return Ok(digest);
        }
        // `out` (and its lock) lives until the temp file has its name.
        self.commit_tmp(&tmp, &digest)?;
        drop(out);
        Ok(digest)
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
        let dest = self.blob_path(digest);
        self.claims.shared(|| {
            std::fs::rename(tmp, &dest).map_err(|e| {
                let _ = std::fs::remove_file(tmp);
                StoreError::io("renaming into", &dest, e)
            })
        })?;
        self.note_blob_written();
        Ok(())
    }

    /// A new temp file in `tmp/`, read-only from birth (the open
    /// descriptor can still write) and locked while this writer lives.
    fn create_tmp(&self) -> Result<(std::path::PathBuf, File)> {
        super::temp::create_locked_file(|| self.tmp_path(), 0o444)
    }
}

fn copy_hashing(
    src: &mut File,
    out: &mut File,
    source: &Path,
    tmp: &Path,
    len: u64,
) -> Result<Digest> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; (len as usize).clamp(1, CHUNK) + 1];
    loop {
        let n = read_some(src, &mut buf, source)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| StoreError::io("writing", tmp, e))?;
    }
}

/// Starts writing `len` bytes at `offset` back to disk without waiting
/// for them. `POSIX_FADV_DONTNEED` on dirty pages starts their writeback
/// (and drops pages already clean), so the sync that makes a large blob
/// durable finds most of it on disk instead of writing all of it then:
/// the disk works while the rest of the file is still being read and
/// hashed. Advisory: a failure changes nothing but timing.
fn start_writeback(file: &File, offset: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
}

fn copy_pipelined(src: &mut File, out: &mut File, source: &Path, tmp: &Path) -> Result<Digest> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> io::Result<()> {
            let mut written = 0u64;
            let mut flushed = 0u64;
            for chunk in rx {
                out.write_all(&chunk)?;
                written += chunk.len() as u64;
                if written - flushed >= WRITEBACK_STEP {
                    start_writeback(out, flushed, written - flushed);
                    flushed = written;
                }
                let _ = back_tx.send(chunk);
            }
            Ok(())
        });
        let mut hasher = Hasher::new();
        let read_result = loop {
            let mut buf = back_rx.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
            buf.resize(CHUNK, 0);
            let n = match read_some(src, &mut buf, source) {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            if n == 0 {
                break Ok(());
            }
            buf.truncate(n);
            hasher.update(&buf);
            if tx.send(buf).is_err() {
                break Ok(()); // the writer failed; its error is reported below
            }
        };
        drop(tx);
        let written = writer.join().expect("writer thread panicked");
        read_result?;
        written.map_err(|e| StoreError::io("writing", tmp, e))?;
        Ok(hasher.finish())
    })
}

fn read_some(src: &mut File, buf: &mut [u8], path: &Path) -> Result<usize> {
    loop {
        match src.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::io("reading", path, e)),
        }
    }
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
            return Ok(bytes.map(|bytes| {
                Box::pin(VerifyingReader::new(std::io::Cursor::new(bytes), *digest)) as BlobReader
            }));
        }
        Ok(self.open_blob(digest)?.map(|f| {
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
    // in one allocation and caught by verification.
    let mut bytes = Vec::with_capacity(size as usize + 1);
    f.read_to_end(&mut bytes)
        .map_err(|e| StoreError::io("reading", path, e))?;
    Ok(Some(bytes))
}
