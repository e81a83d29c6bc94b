//! The stat cache: what a file hashed to the last time it was added, keyed
//! by everything that changes when its content can have changed.
//!
//! An entry matches only if device, inode, size, mtime and ctime (in
//! nanoseconds) are all unchanged; ctime cannot be set from user space, so a
//! file rewritten and given its old mtime back still misses. Like git's
//! index, files whose ctime is too close to the snapshot's start are not
//! cached ("racily clean": they may change again within the clock's tick).
//!
//! One cache per snapshotted root, in the store's `cache/stat/` directory,
//! as plain text (`dev ino size mtime ctime x hex path` per line): it is
//! derived data, and losing or corrupting it only costs a re-read.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use cairn_digest::Digest;

/// What identifies one version of a file on disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    executable: bool,
}

impl FileStamp {
    /// The stamp of a file's `lstat`/`fstatat` result.
    pub fn from_stat(st: &rustix::fs::Stat) -> Self {
        let ns = |secs: i64, nsecs: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsecs);
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
    pub fn is_racy(&self, snapshot_start_ns: i128) -> bool {
        self.ctime_ns >= snapshot_start_ns - 1_000_000_000
    }
}

/// Relative path → (stamp, digest), loaded from and saved to one file.
#[derive(Default)]
pub struct StatCache {
    file: Option<PathBuf>,
    entries: HashMap<String, (FileStamp, Digest)>,
}

impl StatCache {
    /// Loads the cache for `root` kept in `cache_dir` (empty if none).
    pub fn load(cache_dir: &Path, root: &Path) -> Self {
        let key = Digest::of(root.as_os_str().as_encoded_bytes()).hex();
        let file = cache_dir.join("stat").join(&key[..32]);
        let entries = std::fs::read_to_string(&file)
            .map(|text| text.lines().filter_map(parse_line).collect())
            .unwrap_or_default();
        Self {
            file: Some(file),
            entries,
        }
    }

    /// The digest recorded for `path` if its stamp is unchanged.
    pub fn lookup(&self, path: &str, stamp: &FileStamp) -> Option<Digest> {
        self.entries
            .get(path)
            .filter(|(s, _)| s == stamp)
            .map(|(_, d)| *d)
    }

    /// How many files the cache knows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Replaces the whole cache with `entries` and writes it (best effort:
    /// a failure only costs re-reading files next time).
    pub fn save(&mut self, entries: impl IntoIterator<Item = (String, FileStamp, Digest)>) {
        self.entries = entries.into_iter().map(|(p, s, d)| (p, (s, d))).collect();
        let Some(file) = &self.file else { return };
        if let Err(e) = write_atomically(file, &self.entries) {
            tracing::debug!(path = %file.display(), error = %e, "stat cache not saved");
        }
    }
}

fn write_atomically(
    file: &Path,
    entries: &HashMap<String, (FileStamp, Digest)>,
) -> std::io::Result<()> {
    let dir = file.parent().expect("cache files have a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    for (path, (s, d)) in entries {
        writeln!(
            out,
            "{} {} {} {} {} {} {} {} {}",
            s.dev,
            s.ino,
            s.size,
            s.mtime_ns,
            s.ctime_ns,
            s.executable as u8,
            d.hex(),
            d.size(),
            path
        )?;
    }
    out.into_inner().map_err(|e| e.into_error())?;
    std::fs::rename(&tmp, file)
}

fn parse_line(line: &str) -> Option<(String, (FileStamp, Digest))> {
    let mut parts = line.splitn(9, ' ');
    let mut num = || parts.next()?.parse::<u64>().ok();
    let (dev, ino, size) = (num()?, num()?, num()?);
    // Timestamps fit in i64 nanoseconds until 2262 (and i128 parses slowly).
    let mut time = || parts.next()?.parse::<i64>().ok();
    let (mtime_ns, ctime_ns) = (time()?, time()?);
    let x = parts.next()?;
    let hex = parts.next()?;
    let digest = Digest::from_hex(hex, parts.next()?.parse().ok()?).ok()?;
    let path = parts.next()?.to_string();
    let stamp = FileStamp {
        dev,
        ino,
        size,
        mtime_ns: mtime_ns.into(),
        ctime_ns: ctime_ns.into(),
        executable: x == "1",
    };
    Some((path, (stamp, digest)))
}
