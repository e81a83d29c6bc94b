//! Claims: how a writer keeps the blobs it reuses while a collection runs.
//!
//! A blob that is already stored is not written again (deduplicated), so
//! its file keeps the time it was first written: the grace period alone
//! would not protect it from a collection running between the moment a
//! writer finds it and the moment the ref naming it is written. A writer
//! therefore *claims* what it reuses: it appends `(hash, size, kind)` to
//! its own file in `claims/` before relying on the blob being there.
//! Collection treats every claim younger than its grace period as a root
//! (a claimed tree keeps all it reaches), exactly like a ref, and new
//! blobs are young by their own modification time. So whatever a writer
//! stored or reused in the last grace period survives, whichever process
//! it runs in, for as long as it runs, and a writer killed with `-9`
//! leaves only claims that expire.
//!
//! Ordering is what makes it safe, with one lock file, `gc.lock`:
//!
//! * a writer takes it **shared** for a few system calls at a time: to
//!   append claims, and to rename a new blob into place;
//! * a collection takes it **exclusive** for each batch of deletions, and
//!   within it reads the claims written since its last batch and checks
//!   each blob's age again just before unlinking it.
//!
//! A claim written before a batch is seen by that batch; a writer that
//! claims during a batch waits for it to end and then finds the blob gone
//! (and stores it again) or still there (and safe from every later batch).
//! Nobody holds the lock for longer than those calls, so a long-running
//! process (a server, an agent) never starves a collection, and `flock`
//! locks die with their process.
//!
//! Claim files are named `<slot>-<pid>-<nonce>`, a slot being ten minutes
//! of wall clock; a file is honoured while its slot ended less than the
//! grace period ago and deleted by the first collection after that. A
//! handle claims each blob once per slot.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_digest::Digest;
use rustix::fs::{flock, FlockOperation};

use crate::error::{Result, StoreError};
use crate::reach::{Kind, Node};

/// The directory of claim files, under the store's root.
pub(super) const CLAIMS_DIR: &str = "claims";
/// The lock file writers share and collections take alone.
const LOCK_FILE: &str = "gc.lock";
/// The wall-clock span one claim file covers.
pub const CLAIM_SLOT: Duration = Duration::from_secs(600);
/// Bytes per claim: hash, size (little-endian), kind.
const RECORD: usize = 41;

/// A handle's side of the protocol: its pool of lock descriptors and the
/// claim file it appends to.
#[derive(Debug)]
pub(super) struct Claims {
    lock_path: PathBuf,
    dir: PathBuf,
    /// Descriptors of `gc.lock`: `flock` locks belong to an open file, so
    /// each concurrent holder needs its own.
    idle_locks: Mutex<Vec<File>>,
    writer: Mutex<Writer>,
}

#[derive(Debug, Default)]
struct Writer {
    slot: u64,
    file: Option<File>,
    /// What this handle claimed in `slot`, by hash (and the kind claimed).
    claimed: HashMap<[u8; 32], Kind>,
}

impl Claims {
    pub(super) fn new(root: &Path) -> Self {
        Self {
            lock_path: root.join(LOCK_FILE),
            dir: root.join(CLAIMS_DIR),
            idle_locks: Mutex::new(Vec::new()),
            writer: Mutex::new(Writer::default()),
        }
    }

    /// Runs `f` holding `gc.lock` shared: no collection deletes anything
    /// meanwhile. Keep `f` to a few system calls.
    pub(super) fn shared<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let Some(lock) = self.take_lock()? else {
            return f(); // a store this process cannot write: nothing to guard
        };
        flock(&lock, FlockOperation::LockShared)
            .map_err(|e| StoreError::io("locking", &self.lock_path, e.into()))?;
        let result = f();
        let _ = flock(&lock, FlockOperation::Unlock);
        self.idle_locks.lock().expect("lock pool").push(lock);
        result
    }

    fn take_lock(&self) -> Result<Option<File>> {
        if let Some(lock) = self.idle_locks.lock().expect("lock pool").pop() {
            return Ok(Some(lock));
        }
        match open_lock(&self.lock_path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if is_read_only(&e) => Ok(None),
            Err(e) => Err(StoreError::io("opening", &self.lock_path, e)),
        }
    }

    /// Claims `nodes` (those this handle has not claimed in this slot yet).
    /// A store this process may not write to is left alone: it cannot write
    /// a ref either, so it has nothing to keep.
    pub(super) fn claim(&self, nodes: &[Node]) -> Result<()> {
        let mut writer = self.writer.lock().expect("claim writer");
        let slot = slot_of(SystemTime::now());
        if writer.slot != slot {
            *writer = Writer {
                slot,
                ..Writer::default()
            };
        }
        let mut records = Vec::new();
        for &(digest, kind) in nodes {
            let known = writer.claimed.get(digest.hash()).copied();
            if known.is_none_or(|k| !k.covers(kind)) {
                writer.claimed.insert(*digest.hash(), kind);
                records.extend_from_slice(&encode(&digest, kind));
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        let written = self.shared(|| {
            if writer.file.is_none() {
                writer.file = Some(self.create_file(slot)?);
            }
            let file = writer.file.as_mut().expect("just created");
            file.write_all(&records)
                .map_err(|e| StoreError::io("writing a claim in", &self.dir, e))
        });
        match written {
            Err(StoreError::Io { source, .. }) if is_read_only(&source) => {
                writer.claimed.clear();
                Ok(())
            }
            Err(e) => {
                // Nothing is known to be claimed: claim again next time.
                writer.claimed.clear();
                writer.file = None;
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    fn create_file(&self, slot: u64) -> Result<File> {
        std::fs::create_dir_all(&self.dir).map_err(|e| StoreError::io("creating", &self.dir, e))?;
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| {
            StoreError::io(
                "drawing a claim file name in",
                &self.dir,
                io::Error::other(e),
            )
        })?;
        let name = format!("{slot}-{}-{}", std::process::id(), hex::encode(nonce));
        let path = self.dir.join(name);
        OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io("creating", &path, e))
    }

    /// Takes `gc.lock` exclusively, waiting (off the async threads) until
    /// no writer holds it.
    pub(super) async fn exclusive(&self) -> Result<CollectionLock> {
        let path = self.lock_path.clone();
        tokio::task::spawn_blocking(move || {
            let file = open_lock(&path).map_err(|e| StoreError::io("opening", &path, e))?;
            flock(&file, FlockOperation::LockExclusive)
                .map_err(|e| StoreError::io("locking", &path, e.into()))?;
            Ok(CollectionLock { _file: file })
        })
        .await
        .map_err(|e| StoreError::io("locking", &self.lock_path, io::Error::other(e)))?
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `gc.lock` held exclusively; released when dropped.
#[derive(Debug)]
pub struct CollectionLock {
    _file: File,
}

fn open_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .or_else(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => File::open(path),
            _ => Err(e),
        })
}

fn is_read_only(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
        || e.raw_os_error() == Some(rustix::io::Errno::ROFS.raw_os_error())
}

fn slot_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / CLAIM_SLOT.as_secs()
}

fn encode(digest: &Digest, kind: Kind) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..32].copy_from_slice(digest.hash());
    r[32..40].copy_from_slice(&digest.size().to_le_bytes());
    r[40] = match kind {
        Kind::Leaf => 0,
        Kind::Tree => 1,
        Kind::Unknown => 2,
        Kind::OutputTree => 3,
    };
    r
}

fn decode(r: &[u8]) -> Option<Node> {
    let hash: [u8; 32] = r[..32].try_into().ok()?;
    let size = u64::from_le_bytes(r[32..40].try_into().ok()?);
    let kind = match r[40] {
        0 => Kind::Leaf,
        1 => Kind::Tree,
        2 => Kind::Unknown,
        3 => Kind::OutputTree,
        _ => return None,
    };
    let digest = cairn_digest::DigestRef { hash, size: None }.with_size(size);
    Some((digest, kind))
}

/// A collection's reading of the claim files, resumed where it left off.
#[derive(Debug, Default)]
pub struct ClaimLog {
    read_to: HashMap<PathBuf, u64>,
}

/// What one pass over the claim files found.
#[derive(Debug, Default)]
pub struct ClaimsRead {
    /// Claims not read before, still honoured.
    pub claims: Vec<Node>,
    /// Files whose claims are no longer honoured.
    pub expired: Vec<PathBuf>,
}

impl ClaimLog {
    /// Reads every claim honoured at `cutoff` (made less than the grace
    /// period ago) that an earlier call did not return.
    pub(crate) fn read_new(&mut self, dir: &Path, cutoff: SystemTime) -> Result<ClaimsRead> {
        let mut found = ClaimsRead::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(StoreError::io("listing", dir, e)),
        };
        let oldest_slot = slot_of(cutoff);
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("listing", dir, e))?;
            let path = entry.path();
            let Some(slot) = slot_in_name(&entry.file_name()) else {
                continue; // not a claim file
            };
            // A slot is honoured while its end is after the cutoff.
            if slot < oldest_slot {
                found.expired.push(path);
                continue;
            }
            let from = self.read_to.get(&path).copied().unwrap_or(0);
            let (claims, to) = read_records(&path, from)?;
            found.claims.extend(claims);
            self.read_to.insert(path, to);
        }
        Ok(found)
    }
}

fn slot_in_name(name: &std::ffi::OsStr) -> Option<u64> {
    name.to_str()?.split('-').next()?.parse().ok()
}

/// The whole records of `path` from byte `from`, and where they end.
fn read_records(path: &Path, from: u64) -> Result<(Vec<Node>, u64)> {
    use std::io::Seek;
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), from)),
        Err(e) => return Err(StoreError::io("opening", path, e)),
    };
    file.seek(io::SeekFrom::Start(from))
        .map_err(|e| StoreError::io("reading", path, e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| StoreError::io("reading", path, e))?;
    let whole = bytes.len() - bytes.len() % RECORD;
    let claims = bytes[..whole].chunks(RECORD).filter_map(decode).collect();
    Ok((claims, from + whole as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for kind in [Kind::Leaf, Kind::Tree, Kind::Unknown] {
            let d = Digest::of(b"claimed");
            assert_eq!(decode(&encode(&d, kind)), Some((d, kind)));
        }
    }

    #[test]
    fn claims_are_read_once_and_expire_by_slot() {
        let tmp = tempfile::tempdir().unwrap();
        let claims = Claims::new(tmp.path());
        let a = (Digest::of(b"a"), Kind::Tree);
        let b = (Digest::of(b"b"), Kind::Leaf);
        claims.claim(&[a]).unwrap();
        claims.claim(&[a, b]).unwrap(); // a once per slot
        let mut log = ClaimLog::default();
        let now = SystemTime::now();
        let read = log.read_new(claims.dir(), now).unwrap();
        assert_eq!(read.claims, vec![a, b]);
        assert!(read.expired.is_empty());
        assert!(log.read_new(claims.dir(), now).unwrap().claims.is_empty());
        let later = now + CLAIM_SLOT * 2;
        let read = log.read_new(claims.dir(), later).unwrap();
        assert_eq!(read.expired.len(), 1);
    }
}
