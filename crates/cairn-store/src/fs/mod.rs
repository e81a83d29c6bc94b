//! The local-directory store, cairn's embedded default.
//!
//! Layout under the root (documented in docs/ARCHITECTURE.md too):
//!
//! ```text
//! cairn-store          marker file: "cairn-store 1"
//! blobs/ab/abcd…       one read-only file per blob, named by its hex hash
//! refs/<name>          one file per ref: "v<version>\n" then the value
//! refs/<name>.lock     flock(2) target serializing writers of that ref
//! tmp/                 blobs and refs being written, renamed into place
//! claims/              what writers reused recently (see `claims`)
//! gc.lock              shared by writers, taken alone by a collection
//! cache/               derived data (stat caches, executable copies,
//!                      materialized trees, logs); deleting it loses nothing
//! ```
//!
//! Blobs are written to `tmp/` and renamed into place, so a crash never
//! leaves a partial blob under its final name; a blob damaged anyway (a
//! crash before the data reached the disk) fails verification on read and
//! is treated as missing by `put`. Durability is batched: [`FsStore::sync`]
//! (`syncfs(2)`) runs before any ref is written and before a command reports
//! success, instead of one `fsync` per blob. A single file stored on its
//! own is flushed on its own instead ([`FsStore::put_file_durable`]).
//!
//! What a writer leaves half-done when it dies is removed by the next
//! collection, and `tmp/` also whenever the store is opened ([`temp`]);
//! what it reused it claims, so a collection running at the same time
//! keeps it ([`claims`]).

mod assemble;
mod blobs;
pub mod claims;
mod copy;
mod maintenance;
mod page;
mod refs;
pub mod temp;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cairn_digest::Digest;

use crate::error::{Result, StoreError};

pub use maintenance::{BlobInfo, VerifyReport};
pub use temp::{Swept, TempDir};

use claims::Claims;

const MARKER: &str = "cairn-store";
const MARKER_CONTENT: &str = "cairn-store 1\n";

/// A store in a local directory.
#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
    tmp_counter: AtomicU64,
    /// Whether this handle renamed a blob into place since its last sync.
    wrote_blobs: AtomicBool,
    claims: Claims,
    /// The 256 shard directories of `blobs/`, each opened once when first
    /// needed, for `stat`s relative to them (one path component each).
    shards: Box<[std::sync::OnceLock<Option<rustix::fd::OwnedFd>>]>,
    /// What opening the store swept from `tmp/`, until a collection
    /// reports it.
    swept_at_open: std::sync::Mutex<Swept>,
}

impl FsStore {
    /// Opens the store at `root`, creating it if the directory is absent or
    /// empty. Refuses a non-empty directory that is not a store.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root: PathBuf = root.into();
        if !Self::is_store(&root)? {
            Self::create(&root)?;
        }
        Ok(Self::at(root))
    }

    /// Opens the store at `root`, which must exist: an absent or empty
    /// directory is [`StoreError::NoStore`], for callers that only read
    /// and must not leave an empty store behind.
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<Self> {
        let root: PathBuf = root.into();
        if !Self::is_store(&root)? {
            if is_absent_or_empty(&root) {
                return Err(StoreError::NoStore { path: root });
            }
            return Err(not_a_store(&root));
        }
        Ok(Self::at(root))
    }

    fn at(root: PathBuf) -> Self {
        // What killed writers left in `tmp/` (best effort: a store opened
        // by a user who may not write to it is only read).
        let swept = temp::sweep(&root.join("tmp"), false).unwrap_or_else(|e| {
            tracing::debug!(error = %e, "tmp/ not swept");
            Swept::default()
        });
        Self {
            claims: Claims::new(&root),
            root,
            tmp_counter: AtomicU64::new(0),
            wrote_blobs: AtomicBool::new(false),
            shards: (0..256).map(|_| std::sync::OnceLock::new()).collect(),
            swept_at_open: std::sync::Mutex::new(swept),
        }
    }

    /// Whether `root` holds a store of this layout (its marker); an error
    /// for a marker of another layout version.
    fn is_store(root: &Path) -> Result<bool> {
        let marker = root.join(MARKER);
        match std::fs::read_to_string(&marker) {
            Ok(text) if text == MARKER_CONTENT => Ok(true),
            Ok(_) => Err(StoreError::NotAStore {
                path: root.into(),
                reason: format!(
                    "its marker {} names a layout this version does not know",
                    marker.display()
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(not_a_store(root)),
            Err(e) => Err(StoreError::io("reading", marker, e)),
        }
    }

    fn create(root: &Path) -> Result<()> {
        if !is_absent_or_empty(root) {
            return Err(not_a_store(root));
        }
        for dir in ["refs", "tmp", "cache"] {
            mkdir_all(&root.join(dir))?;
        }
        for byte in 0..=255u8 {
            mkdir_all(&root.join("blobs").join(format!("{byte:02x}")))?;
        }
        let marker = root.join(MARKER);
        std::fs::write(&marker, MARKER_CONTENT).map_err(|e| StoreError::io("writing", &marker, e))
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where derived, disposable data may be kept.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// The file holding a blob (which may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("blobs").join(&hex[..2]).join(hex)
    }

    /// A fresh path in `tmp/`, unique across processes and threads.
    pub(crate) fn tmp_path(&self) -> PathBuf {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tid = rustix::thread::gettid().as_raw_nonzero();
        self.root
            .join("tmp")
            .join(format!("{}-{tid}-{n}", std::process::id()))
    }

    /// Makes everything written so far durable (`syncfs(2)`).
    pub fn sync(&self) -> Result<()> {
        self.wrote_blobs.store(false, Ordering::SeqCst);
        let dir = std::fs::File::open(&self.root)
            .map_err(|e| StoreError::io("opening", &self.root, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| StoreError::io("syncing", &self.root, e.into()))
    }

    /// [`sync`](Self::sync), but only if this handle stored a blob since the
    /// last sync: a command that found everything already stored (a re-add
    /// of an unchanged tree) then costs no `syncfs`, which flushes every
    /// dirty page of the file system, not only the store's. Blobs another
    /// process is still writing are that process's to sync.
    pub fn sync_written(&self) -> Result<()> {
        if self.wrote_blobs.load(Ordering::SeqCst) {
            self.sync()
        } else {
            Ok(())
        }
    }

    /// Notes that a blob was renamed into place (see [`sync_written`](Self::sync_written)).
    fn note_blob_written(&self) {
        self.wrote_blobs.store(true, Ordering::SeqCst);
    }

    /// Claims blobs this process reuses without writing them, so that no
    /// collection deletes them within its grace period ([`claims`]); a
    /// claimed tree or document keeps all it reaches. Claim *before*
    /// checking that a blob is there: a blob still present after its claim
    /// stays.
    pub fn claim(&self, nodes: &[crate::reach::Node]) -> Result<()> {
        self.claims.claim(nodes)
    }

    /// `gc.lock` held exclusively, for a collection's batch of deletions.
    pub(crate) async fn lock_collection(&self) -> Result<claims::CollectionLock> {
        self.claims.exclusive().await
    }

    /// What opening the store swept from `tmp/` and no collection has
    /// reported yet.
    pub(crate) fn take_swept_at_open(&self) -> Swept {
        std::mem::take(&mut *self.swept_at_open.lock().expect("swept"))
    }

    /// Where the claim files are.
    pub(crate) fn claims_dir(&self) -> &Path {
        self.claims.dir()
    }

    /// The metadata of a blob's file (`None` if absent), one `stat`
    /// relative to its shard directory.
    pub fn blob_stat(&self, digest: &Digest) -> Result<Option<rustix::fs::Stat>> {
        let mut buf = [0u8; 64];
        let hex = digest.hex_in(&mut buf);
        let shard = usize::from(digest.hash()[0]);
        let dir = self.shards[shard].get_or_init(|| {
            rustix::fs::open(
                self.root.join("blobs").join(&hex[..2]),
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .ok()
        });
        let stat = match dir {
            Some(dir) => rustix::fs::statat(dir, hex, rustix::fs::AtFlags::SYMLINK_NOFOLLOW),
            None => rustix::fs::lstat(self.blob_path(digest)),
        };
        match stat {
            Ok(st) => Ok(Some(st)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(StoreError::io(
                "reading metadata of",
                self.blob_path(digest),
                e.into(),
            )),
        }
    }
}

/// The thread pool for file work (hashing, copying, linking many files).
///
/// Wider than the core count: small-file work on a cold cache waits on the
/// disk more than it computes, and one thread per core leaves the disk with
/// a single request in flight. Measured on a 2-core machine adding 20,000
/// cold files: 8 threads were about 25% faster than 2.
pub fn io_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let threads =
            (4 * std::thread::available_parallelism().map_or(2, |n| n.get())).clamp(8, 64);
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("cairn-io-{i}"))
            .build()
            .expect("creating the file I/O thread pool")
    })
}

/// Whether `path` does not exist or is an empty directory.
fn is_absent_or_empty(path: &Path) -> bool {
    match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

fn not_a_store(root: &Path) -> StoreError {
    StoreError::NotAStore {
        path: root.into(),
        reason: "not empty, and no cairn-store marker in it".into(),
    }
}

fn mkdir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| StoreError::io("creating", path, e))
}
