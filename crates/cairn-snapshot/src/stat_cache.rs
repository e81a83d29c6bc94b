//! The stat cache: what a file hashed to the last time it was added, keyed
//! by its inode and trusted only while both the file and its blob are
//! unchanged.
//!
//! **The file.** An entry matches only if device, inode, size, mtime and
//! ctime (in nanoseconds) and the executable bit are all unchanged; ctime
//! cannot be set from user space, so a file rewritten and given its old
//! mtime back still misses. Like git's index, files whose ctime is too
//! close to the snapshot's start are not cached ("racily clean": they may
//! change again within the clock's tick).
//!
//! **The blob.** An entry also records the blob file's inode, mtime and
//! ctime when it was last seen whole. A hit is trusted only after a `stat`
//! of the blob finds it present with the same size and the same metadata:
//! a blob deleted, truncated, appended to or rewritten in place (root
//! ignores read-only modes) changes them, and the snapshot then re-checks
//! or re-stores it instead of vouching for it ([`crate::snapshot`]).
//!
//! **The format** is git's index's idea: fixed-size binary records, read
//! with one `read` and searched in place, so loading a cache of 20,000
//! files parses no text and allocates nothing per file. Records are in the
//! order the snapshot walks files, so the record at a file's position is
//! almost always its own (one comparison); an index of positions sorted by
//! (device, inode) finds it otherwise (after files were added or
//! removed). One cache per snapshotted root, in the store's `cache/stat/`
//! directory; it is derived data, and losing or corrupting it only costs a
//! re-read.
//!
//! **The tree.** The cache also remembers the tree the last snapshot
//! built: a fingerprint of everything the directory encodings are made of
//! (every walked path, its kind, each file's digest and executable bit,
//! each symlink's target) and the digests of the encoded directories,
//! root last. Encoding is a pure function of those inputs, so a snapshot
//! whose fingerprint matches reuses the digests instead of encoding again,
//! once the directory blobs are found whole in the store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_digest::Digest;
use cairn_store::FsStore;

const MAGIC: &[u8; 8] = b"cairnst4";
/// Magic, entry count, root path length, directory count of the tree record.
const HEADER: usize = 8 + 8 + 8 + 8;
/// Bytes of a tree record's fingerprint.
const FINGERPRINT: usize = 32;
/// Bytes per directory digest of a tree record (hash and size).
const DIR_DIGEST: usize = 32 + 8;
const ENTRY: usize = 112;
/// Bytes per index slot (a record's position).
const SLOT: usize = 4;
/// Flag: a file seen too recently to trust ("racily clean"); its record
/// only keeps the positions of the others aligned.
const UNTRUSTED: u64 = 2;
/// A cache file not touched for this long is touched when used, so that a
/// collection can tell the unused ones by age.
const TOUCH_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What identifies one version of a file on disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    executable: bool,
}

impl FileStamp {
    /// The stamp of a file's `lstat`/`fstatat` result.
    pub fn from_stat(st: &rustix::fs::Stat) -> Self {
        Self {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec as i64),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec as i64),
            executable: st.st_mode & 0o111 != 0,
        }
    }

    /// Whether any execute bit is set.
    pub fn executable(&self) -> bool {
        self.executable
    }

    /// Whether this version changed so recently that it may change again
    /// unnoticed within the same timestamp tick.
    pub fn is_racy(&self, snapshot_start_ns: i64) -> bool {
        self.ctime_ns >= snapshot_start_ns - 1_000_000_000
    }
}

/// What identifies a blob file as last seen whole.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct BlobStamp {
    ino: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl BlobStamp {
    /// The stamp of a blob file's `stat`.
    pub fn from_stat(st: &rustix::fs::Stat) -> Self {
        Self {
            ino: st.st_ino,
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec as i64),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec as i64),
        }
    }

    /// When the blob file was written, in seconds since the epoch.
    pub fn written_secs(&self) -> i64 {
        self.mtime_ns.div_euclid(1_000_000_000)
    }
}

pub(crate) fn ns(secs: i64, nsecs: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsecs)
}

/// One file as the cache remembers it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Entry {
    /// The file.
    pub file: FileStamp,
    /// What it hashed to.
    pub digest: Digest,
    /// Its blob file when last seen whole.
    pub blob: BlobStamp,
    /// When this cache last claimed the blob (seconds since the epoch).
    pub claimed_secs: i64,
    /// Whether a lookup may match it (a "racily clean" file's may not).
    pub trusted: bool,
}

/// The tree a snapshot built, as the cache remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeRecord {
    /// What the encodings were made of ([`crate::snapshot`] computes it).
    pub fingerprint: [u8; FINGERPRINT],
    /// The encoded directories' digests, the root's last.
    pub dirs: Vec<Digest>,
}

/// The cache of one snapshotted root: the bytes of its file, searched in place.
/// The default is an empty cache that is never saved (a directory seen once).
#[derive(Default)]
pub struct StatCache {
    file: PathBuf,
    root: PathBuf,
    bytes: Vec<u8>,
    count: usize,
    offset: usize,
    /// Directories in the tree record (0: none).
    dirs: usize,
}

impl StatCache {
    /// Where the cache for `root` is kept in `store`.
    fn file_for(store: &FsStore, root: &Path) -> PathBuf {
        let key = Digest::of(root.as_os_str().as_encoded_bytes()).hex();
        store.cache_dir().join("stat").join(&key[..32])
    }

    /// Where the link memory for `root` is kept in `store`, beside its
    /// cache (see `links.rs`).
    pub(crate) fn links_file(store: &FsStore, root: &Path) -> PathBuf {
        Self::file_for(store, root).with_extension("links")
    }

    /// The size of the cache file for `root` (0 if there is none): how
    /// much [`StatCache::load`] will read.
    pub fn file_len(store: &FsStore, root: &Path) -> u64 {
        std::fs::metadata(Self::file_for(store, root)).map_or(0, |m| m.len())
    }

    /// Loads the cache for `root` kept in `store` (empty if none or unreadable).
    pub fn load(store: &FsStore, root: &Path) -> Self {
        let file = Self::file_for(store, root);
        let bytes = std::fs::read(&file).unwrap_or_default();
        let mut cache = Self {
            file,
            root: root.to_path_buf(),
            bytes,
            count: 0,
            offset: 0,
            dirs: 0,
        };
        match cache.parse_header() {
            Some((count, offset, dirs)) => {
                cache.count = count;
                cache.offset = offset;
                cache.dirs = dirs;
                cache.touch_if_old();
            }
            None => cache.bytes.clear(),
        }
        cache
    }

    fn parse_header(&self) -> Option<(usize, usize, usize)> {
        let b = &self.bytes;
        if b.len() < HEADER || &b[..8] != MAGIC {
            return None;
        }
        let count = usize::try_from(read_u64(b, 8)).ok()?;
        let root_len = usize::try_from(read_u64(b, 16)).ok()?;
        let dirs = usize::try_from(read_u64(b, 24)).ok()?;
        let offset = HEADER.checked_add(root_len)?;
        let tree = match dirs {
            0 => 0,
            n => FINGERPRINT.checked_add(n.checked_mul(DIR_DIGEST)?)?,
        };
        let end = offset
            .checked_add(count.checked_mul(ENTRY + SLOT)?)?
            .checked_add(tree)?;
        (end == b.len() && &b[HEADER..offset] == self.root.as_os_str().as_encoded_bytes())
            .then_some((count, offset, dirs))
    }

    fn touch_if_old(&self) {
        let old = std::fs::metadata(&self.file)
            .and_then(|m| m.modified())
            .is_ok_and(|m| m.elapsed().unwrap_or_default() > TOUCH_AFTER);
        if old {
            if let Ok(f) = std::fs::File::options().append(true).open(&self.file) {
                let _ = f.set_modified(SystemTime::now());
            }
        }
    }

    /// How many files the cache knows.
    pub fn len(&self) -> usize {
        self.count
    }

    /// The entry recorded for `stamp`'s inode if the file is unchanged;
    /// `position` is the file's place in the walk (where its record is
    /// unless files came or went).
    pub fn lookup(&self, position: usize, stamp: &FileStamp) -> Option<Entry> {
        let key = (stamp.dev, stamp.ino);
        let record = if position < self.count && key_of(self.record(position)) == key {
            self.record(position)
        } else {
            self.find(key)?
        };
        decode(record).filter(|entry| entry.trusted && entry.file == *stamp)
    }

    /// The recorded tree's directory digests (the root's last) if it was
    /// built from what `fingerprint` names.
    pub fn tree_for(&self, fingerprint: &[u8; FINGERPRINT]) -> Option<Vec<Digest>> {
        if self.dirs == 0 {
            return None;
        }
        let start = self.offset + self.count * (ENTRY + SLOT);
        let b = &self.bytes[start..];
        if b[..FINGERPRINT] != fingerprint[..] {
            return None;
        }
        let dirs = b[FINGERPRINT..]
            .chunks_exact(DIR_DIGEST)
            .map(|d| {
                let hash: [u8; 32] = d[..32].try_into().expect("32 bytes");
                Digest::from_parts(hash, read_u64(d, 32))
            })
            .collect();
        Some(dirs)
    }

    /// Binary search of the index for `key`.
    fn find(&self, key: (u64, u64)) -> Option<&[u8]> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let record = self.record(self.slot(mid));
            match key_of(record).cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(record),
            }
        }
        None
    }

    fn record(&self, i: usize) -> &[u8] {
        let start = self.offset + i * ENTRY;
        &self.bytes[start..start + ENTRY]
    }

    fn slot(&self, i: usize) -> usize {
        let start = self.offset + self.count * ENTRY + i * SLOT;
        u32::from_le_bytes(self.bytes[start..start + SLOT].try_into().expect("4 bytes")) as usize
    }

    /// Replaces the whole cache with `entries`, in walk order, and the
    /// tree they made, and writes it (best effort: a failure only costs
    /// re-reading files next time).
    pub fn save(&mut self, store: &FsStore, entries: Vec<Entry>, tree: Option<&TreeRecord>) {
        let mut index: Vec<u32> = (0..entries.len() as u32).collect();
        index.sort_by_key(|&i| {
            let f = &entries[i as usize].file;
            (f.dev, f.ino)
        });
        let root = self.root.as_os_str().as_encoded_bytes();
        let dirs = tree.map_or(0, |t| t.dirs.len());
        let tree_size = if dirs == 0 {
            0
        } else {
            FINGERPRINT + dirs * DIR_DIGEST
        };
        let size = HEADER + root.len() + entries.len() * (ENTRY + SLOT) + tree_size;
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(MAGIC);
        for n in [entries.len(), root.len(), dirs] {
            bytes.extend_from_slice(&(n as u64).to_le_bytes());
        }
        bytes.extend_from_slice(root);
        entries.iter().for_each(|e| encode(e, &mut bytes));
        index
            .iter()
            .for_each(|i| bytes.extend_from_slice(&i.to_le_bytes()));
        if let Some(tree) = tree.filter(|_| dirs > 0) {
            bytes.extend_from_slice(&tree.fingerprint);
            for d in &tree.dirs {
                bytes.extend_from_slice(d.hash());
                bytes.extend_from_slice(&d.size().to_le_bytes());
            }
        }
        if let Err(e) = self.write(store, &bytes) {
            tracing::debug!(path = %self.file.display(), error = %e, "stat cache not saved");
        }
        self.count = entries.len();
        self.offset = HEADER + root.len();
        self.dirs = dirs;
        self.bytes = bytes;
    }

    fn write(&self, store: &FsStore, bytes: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
        replace_file(store, &self.file, bytes)
    }
}

/// Writes `bytes` to a temporary file beside `file` and renames it over
/// `file`: a reader sees the old file or the new one, never half of one.
pub(crate) fn replace_file(
    store: &FsStore,
    file: &Path,
    bytes: &[u8],
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = file.parent().expect("cache files have a parent");
    let (tmp, mut out) = store.temp_file_in(dir)?;
    let written = out
        .write_all(bytes)
        .and_then(|()| std::fs::rename(&tmp, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(written?)
}

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn key_of(record: &[u8]) -> (u64, u64) {
    (read_u64(record, 0), read_u64(record, 8))
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn read_i64(b: &[u8], at: usize) -> i64 {
    read_u64(b, at) as i64
}

fn encode(e: &Entry, out: &mut Vec<u8>) {
    let f = &e.file;
    for v in [f.dev, f.ino, f.size] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [f.mtime_ns, f.ctime_ns] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(e.digest.hash());
    out.extend_from_slice(&e.blob.ino.to_le_bytes());
    for v in [e.blob.mtime_ns, e.blob.ctime_ns, e.claimed_secs] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let flags = u64::from(f.executable) | if e.trusted { 0 } else { UNTRUSTED };
    out.extend_from_slice(&flags.to_le_bytes());
}

fn decode(b: &[u8]) -> Option<Entry> {
    let size = read_u64(b, 16);
    let hash: [u8; 32] = b[40..72].try_into().ok()?;
    let flags = read_u64(b, 104);
    Some(Entry {
        file: FileStamp {
            dev: read_u64(b, 0),
            ino: read_u64(b, 8),
            size,
            mtime_ns: read_i64(b, 24),
            ctime_ns: read_i64(b, 32),
            executable: flags & 1 == 1,
        },
        digest: cairn_digest::DigestRef { hash, size: None }.with_size(size),
        blob: BlobStamp {
            ino: read_u64(b, 72),
            mtime_ns: read_i64(b, 80),
            ctime_ns: read_i64(b, 88),
        },
        claimed_secs: read_i64(b, 96),
        trusted: flags & UNTRUSTED == 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ino: u64) -> Entry {
        Entry {
            file: FileStamp {
                dev: 7,
                ino,
                size: 3,
                mtime_ns: 1_700_000_000_000_000_001,
                ctime_ns: -5,
                executable: ino.is_multiple_of(2),
            },
            digest: Digest::of(b"abc"),
            blob: BlobStamp {
                ino: ino + 100,
                mtime_ns: 9,
                ctime_ns: 10,
            },
            claimed_secs: 1234,
            trusted: true,
        }
    }

    #[test]
    fn entries_round_trip_and_are_found_by_inode() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsStore::open(tmp.path().join("s")).unwrap();
        let root = tmp.path().join("src");
        let mut cache = StatCache::load(&store, &root);
        assert_eq!(cache.len(), 0);
        let mut entries: Vec<Entry> = [5, 1, 9, 3].into_iter().map(entry).collect();
        entries[2].trusted = false;
        cache.save(&store, entries.clone(), None);
        let loaded = StatCache::load(&store, &root);
        assert_eq!(loaded.len(), 4);
        for (i, e) in entries.iter().enumerate() {
            let expected = e.trusted.then_some(*e);
            // At its place in the walk, and anywhere else (files came or went).
            assert_eq!(loaded.lookup(i, &e.file), expected);
            assert_eq!(loaded.lookup((i + 1) % 4, &e.file), expected);
            assert_eq!(loaded.lookup(99, &e.file), expected);
        }
        let mut changed = entries[0].file;
        changed.ctime_ns += 1;
        assert_eq!(loaded.lookup(0, &changed), None);
        assert_eq!(loaded.lookup(0, &entry(4).file), None);
        // Another root's cache is not this one's, even if the file were swapped.
        assert_eq!(StatCache::load(&store, &tmp.path().join("other")).len(), 0);
    }

    #[test]
    fn the_tree_record_is_kept_and_found_only_by_its_fingerprint() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsStore::open(tmp.path().join("s")).unwrap();
        let root = tmp.path().join("src");
        let tree = TreeRecord {
            fingerprint: [7; FINGERPRINT],
            dirs: vec![Digest::of(b"sub"), Digest::of(b"root")],
        };
        let mut cache = StatCache::load(&store, &root);
        cache.save(&store, vec![entry(1), entry(2)], Some(&tree));
        assert_eq!(cache.tree_for(&tree.fingerprint), Some(tree.dirs.clone()));
        let loaded = StatCache::load(&store, &root);
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded.lookup(1, &entry(2).file), Some(entry(2)));
        assert_eq!(loaded.tree_for(&tree.fingerprint), Some(tree.dirs.clone()));
        assert_eq!(loaded.tree_for(&[8; FINGERPRINT]), None);
        // Saved again without a tree, it has none.
        let mut cache = loaded;
        cache.save(&store, vec![entry(1)], None);
        assert_eq!(
            StatCache::load(&store, &root).tree_for(&tree.fingerprint),
            None
        );
        // A cut-off tree record makes the whole file unreadable, not a
        // shorter list of directories.
        cache.save(&store, vec![entry(1)], Some(&tree));
        let mut bytes = std::fs::read(&cache.file).unwrap();
        bytes.truncate(bytes.len() - DIR_DIGEST);
        std::fs::write(&cache.file, bytes).unwrap();
        let damaged = StatCache::load(&store, &root);
        assert_eq!(
            (damaged.len(), damaged.tree_for(&tree.fingerprint)),
            (0, None)
        );
    }

    #[test]
    fn a_damaged_cache_file_is_an_empty_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsStore::open(tmp.path().join("s")).unwrap();
        let root = tmp.path().join("src");
        let mut cache = StatCache::load(&store, &root);
        cache.save(&store, vec![entry(1)], None);
        let file = cache.file.clone();
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.pop();
        std::fs::write(&file, bytes).unwrap();
        assert_eq!(StatCache::load(&store, &root).len(), 0);
    }
}
