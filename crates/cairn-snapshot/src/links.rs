//! The link memory: the targets of a root's symlinks, by directory, so
//! that a walk reads a target only where its directory changed.
//!
//! No system call rewrites a symlink's target: a new target is a new link,
//! made or renamed into its directory, and that changes the directory's
//! mtime and ctime (ctime cannot be set from user space). So while a
//! directory has the device, inode, mtime and ctime it had, its symlinks
//! are the ones it had, with the same targets, and the walk takes them
//! from here instead of calling `readlinkat` for each: in a root of
//! busybox's 400 applet links those calls were most of the walk. A
//! directory changed within a second before the snapshot that saw it is
//! not remembered (as the stat cache's "racily clean" files): it may have
//! changed again within the same timestamp tick.
//!
//! Kept beside the root's stat cache, as `<its file>.links`: derived data
//! like it, where losing or damaging the file only costs the reads. The
//! format: a magic, then per directory its device, inode, mtime and ctime
//! (nanoseconds), its count of links, and each link's name and target,
//! each preceded by its length; last, the SHA-256 of all that, so a torn
//! or damaged file is read as no memory rather than as wrong targets.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use cairn_digest::Digest;
use cairn_store::FsStore;

use crate::stat_cache::{ns, replace_file};

const MAGIC: &[u8; 8] = b"cairnln1";
/// Bytes of the trailing checksum.
const SUM: usize = 32;

/// What identifies one version of a directory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct DirStamp {
    dev: u64,
    ino: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl DirStamp {
    /// The stamp of a directory's `fstat`.
    pub(crate) fn from_stat(st: &rustix::fs::Stat) -> Self {
        Self {
            dev: st.st_dev,
            ino: st.st_ino,
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec as i64),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec as i64),
        }
    }

    fn is_racy(&self, snapshot_start_ns: i64) -> bool {
        self.ctime_ns >= snapshot_start_ns - 1_000_000_000
    }
}

/// The links one walk found in one directory, in the order it met them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DirLinks {
    pub stamp: DirStamp,
    /// Each link's name and target.
    pub links: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The links a root's last walk found, as loaded from its file.
#[derive(Default)]
pub(crate) struct LinkMemory {
    bytes: Vec<u8>,
    /// By (device, inode): the stamp and where each name and target is.
    dirs: Parsed,
}

impl LinkMemory {
    /// Loads `file`; an absent, unreadable or malformed file is an empty
    /// memory.
    pub(crate) fn load(file: &Path) -> Self {
        let mut bytes = std::fs::read(file).unwrap_or_default();
        let Some(body) = bytes.len().checked_sub(SUM) else {
            return Self::default();
        };
        if Digest::of(&bytes[..body]).hash()[..] != bytes[body..] {
            return Self::default();
        }
        bytes.truncate(body);
        match parse(&bytes) {
            Some(dirs) => Self { bytes, dirs },
            None => Self::default(),
        }
    }

    /// The links of the directory `stamp`, if it is unchanged.
    pub(crate) fn of(&self, stamp: &DirStamp) -> Option<Remembered<'_>> {
        let (seen, links) = self.dirs.get(&(stamp.dev, stamp.ino))?;
        (seen == stamp).then_some(Remembered {
            bytes: &self.bytes,
            links,
            next: 0,
        })
    }
}

/// One unchanged directory's remembered links.
pub(crate) struct Remembered<'a> {
    bytes: &'a [u8],
    links: &'a [Spans],
    /// Where the next name is looked for first: an unchanged directory
    /// lists its entries in the same order.
    next: usize,
}

impl Remembered<'_> {
    /// The target of the link `name`, if it was there.
    pub(crate) fn target(&mut self, name: &[u8]) -> Option<Vec<u8>> {
        let is = |i: &usize| self.bytes[self.links[*i].0.clone()] == *name;
        let found = Some(self.next)
            .filter(|i| *i < self.links.len() && is(i))
            .or_else(|| (0..self.links.len()).find(is))?;
        self.next = found + 1;
        Some(self.bytes[self.links[found].1.clone()].to_vec())
    }
}

/// Where a link's name and target are in the loaded bytes.
type Spans = (Range<usize>, Range<usize>);

/// Each directory's stamp and links, by (device, inode).
type Parsed = HashMap<(u64, u64), (DirStamp, Vec<Spans>)>;

fn parse(b: &[u8]) -> Option<Parsed> {
    let mut at = Cursor {
        len: b.len(),
        at: 0,
    };
    if b[at.take(MAGIC.len())?] != MAGIC[..] {
        return None;
    }
    let u64_at = |r: Range<usize>| u64::from_le_bytes(b[r].try_into().expect("8 bytes"));
    let mut dirs = HashMap::new();
    while at.at < b.len() {
        let (dev, ino) = (u64_at(at.take(8)?), u64_at(at.take(8)?));
        let (mtime, ctime) = (u64_at(at.take(8)?), u64_at(at.take(8)?));
        let count = u32::from_le_bytes(b[at.take(4)?].try_into().expect("4 bytes"));
        let stamp = DirStamp {
            dev,
            ino,
            mtime_ns: mtime as i64,
            ctime_ns: ctime as i64,
        };
        let mut links = Vec::new();
        for _ in 0..count {
            let mut field = || {
                let len = u16::from_le_bytes(b[at.take(2)?].try_into().expect("2 bytes"));
                at.take(usize::from(len))
            };
            let name = field()?;
            links.push((name, field()?));
        }
        dirs.insert((dev, ino), (stamp, links));
    }
    Some(dirs)
}

/// A position in a file of `len` bytes.
struct Cursor {
    len: usize,
    at: usize,
}

impl Cursor {
    /// The next `n` bytes' range, if there are `n` more.
    fn take(&mut self, n: usize) -> Option<Range<usize>> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.len)?;
        let range = self.at..end;
        self.at = end;
        Some(range)
    }
}

/// Writes `dirs` but those changed since `start_ns` - 1 s to `file`,
/// replacing it whole; a failure only costs the next walk its reads.
pub(crate) fn save(store: &FsStore, file: &Path, dirs: &[DirLinks], start_ns: i64) {
    let mut bytes = MAGIC.to_vec();
    for dir in dirs.iter().filter(|d| !d.stamp.is_racy(start_ns)) {
        let fits = |v: &[u8]| u16::try_from(v.len()).is_ok();
        if !dir.links.iter().all(|(n, t)| fits(n) && fits(t)) {
            continue;
        }
        let s = &dir.stamp;
        for v in [s.dev, s.ino, s.mtime_ns as u64, s.ctime_ns as u64] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(&(dir.links.len() as u32).to_le_bytes());
        for (name, target) in &dir.links {
            for v in [name, target] {
                bytes.extend_from_slice(&(v.len() as u16).to_le_bytes());
                bytes.extend_from_slice(v);
            }
        }
    }
    let sum = *Digest::of(&bytes).hash();
    bytes.extend_from_slice(&sum);
    let written = replace_file(store, file, &bytes);
    if let Err(e) = written {
        tracing::debug!(path = %file.display(), error = %e, "link memory not saved");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ino: u64, ctime_ns: i64) -> DirStamp {
        DirStamp {
            dev: 1,
            ino,
            mtime_ns: ctime_ns,
            ctime_ns,
        }
    }

    fn dir(ino: u64, links: &[(&str, &str)]) -> DirLinks {
        DirLinks {
            stamp: stamp(ino, 5_000_000_000),
            links: links
                .iter()
                .map(|(n, t)| (n.as_bytes().to_vec(), t.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn saved_links_are_found_by_their_unchanged_directory_only() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(store_dir.path()).unwrap();
        let file = store_dir.path().join("memory.links");
        let dirs = [
            dir(7, &[("sh", "busybox"), ("ls", "busybox")]),
            dir(8, &[("up", "../..")]),
        ];
        save(&store, &file, &dirs, 10_000_000_000);
        let memory = LinkMemory::load(&file);
        assert_eq!(memory.dirs.len(), 2);
        let mut seven = memory.of(&dirs[0].stamp).unwrap();
        // Out of order too.
        assert_eq!(seven.target(b"ls").unwrap(), b"busybox");
        assert_eq!(seven.target(b"sh").unwrap(), b"busybox");
        assert_eq!(seven.target(b"cat"), None);
        // The same inode with another ctime is another directory.
        assert!(memory.of(&stamp(7, 6_000_000_000)).is_none());
        assert!(memory.of(&stamp(9, 5_000_000_000)).is_none());
    }

    #[test]
    fn a_directory_changed_just_before_the_walk_is_not_remembered() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(store_dir.path()).unwrap();
        let file = store_dir.path().join("memory.links");
        // Changed 0.5 s before the walk started.
        save(
            &store,
            &file,
            &[dir(7, &[("sh", "busybox")])],
            5_500_000_000,
        );
        assert!(LinkMemory::load(&file)
            .of(&stamp(7, 5_000_000_000))
            .is_none());
    }

    #[test]
    fn a_malformed_file_is_an_empty_memory() {
        let dir_ = tempfile::tempdir().unwrap();
        let file = dir_.path().join("memory.links");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 2, 3]);
        let sum = *Digest::of(&bytes).hash();
        bytes.extend_from_slice(&sum);
        std::fs::write(&file, &bytes).unwrap();
        assert!(LinkMemory::load(&file).dirs.is_empty());
        std::fs::write(&file, b"not a memory").unwrap();
        assert!(LinkMemory::load(&file).dirs.is_empty());
    }
}
