//! Snapshotting a local file or directory into the store.
//!
//! Three phases: walk the directory (names and kinds only), store every
//! file in parallel (one `lstat` each, and a read only when the stat cache
//! misses), then encode directories deepest first so each parent knows its
//! children's digests.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cairn_digest::Digest;
use cairn_store::FsStore;
use cairn_tree::{encode_directory, validate_name, DirectoryBuilder};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rayon::prelude::*;
use rustix::fs::{AtFlags, Mode, OFlags};

use crate::error::SnapshotError;
use crate::stat_cache::{FileStamp, StatCache};
use crate::Progress;

/// How to snapshot.
#[derive(Debug, Default, Clone)]
pub struct SnapshotOptions {
    /// Gitignore-style patterns of paths to leave out.
    pub exclude: Vec<String>,
    /// Also honour `.gitignore` files found in the tree.
    pub gitignore: bool,
    /// A directory seen once (a build's `/out`): no stat cache is read or
    /// written, and the path is used as given, not resolved, since it may
    /// be a `/proc/self/fd/N/.` path to a mount only this process reaches
    /// (resolving it would name another directory).
    pub seen_once: bool,
}

/// What a snapshot stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    /// The tree's (or, for a single file, the blob's) digest.
    pub digest: Digest,
    /// Whether `digest` names a tree (else a file blob).
    pub is_tree: bool,
    /// Files in the snapshot.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
    /// Files whose content had to be read (stat cache misses).
    pub files_read: u64,
}

#[derive(Debug)]
enum Kind {
    File,
    Dir,
    Symlink,
}

struct Entry {
    rel: String,
    kind: Kind,
}

/// Snapshots `path` into `store`.
pub fn snapshot(
    store: &FsStore,
    path: &Path,
    options: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<Added, SnapshotError> {
    let start = start_ns();
    let meta =
        std::fs::symlink_metadata(path).map_err(|e| SnapshotError::io("reading", path, e))?;
    if meta.is_file() {
        let digest = store.put_file(path)?;
        store.sync_written()?;
        progress.advance(1, digest.size());
        return Ok(Added {
            digest,
            is_tree: false,
            files: 1,
            bytes: digest.size(),
            files_read: 1,
        });
    }
    if !meta.is_dir() {
        return Err(unsupported(path, &meta.file_type()));
    }
    let root = if options.seen_once {
        path.to_path_buf()
    } else {
        std::fs::canonicalize(path).map_err(|e| SnapshotError::io("resolving", path, e))?
    };
    let clock = Instant::now();
    // The stat cache is parsed while the directory is walked.
    let (entries, mut cache) = std::thread::scope(|s| {
        let cache = s.spawn(|| match options.seen_once {
            true => StatCache::default(),
            false => StatCache::load(&store.cache_dir(), &root),
        });
        let entries = walk(&root, options);
        let cache = cache.join().expect("loading the stat cache does not panic");
        entries.map(|e| (e, cache))
    })?;
    tracing::debug!(entries = entries.len(), cached = cache.len(), elapsed = ?clock.elapsed(), "walked");
    let files = store_files(store, &root, &entries, &cache, progress)?;
    tracing::debug!(files = files.len(), elapsed = ?clock.elapsed(), "files stored");
    let digest = encode_directories(store, &root, &entries, &files)?;
    tracing::debug!(elapsed = ?clock.elapsed(), "directories encoded");
    let stats = Added {
        digest,
        is_tree: true,
        files: files.len() as u64,
        bytes: files.iter().map(|f| f.digest.size()).sum(),
        files_read: files.iter().filter(|f| f.was_read).count() as u64,
    };
    // Durable before the stat cache may vouch for them.
    store.sync_written()?;
    if stats.files_read > 0 || cache.len() != files.len() {
        cache.save(
            file_entries(&entries)
                .zip(files)
                .filter(|(_, f)| !f.stamp.is_racy(start))
                .map(|(e, f)| (e.rel.clone(), f.stamp, f.digest)),
        );
    }
    tracing::debug!(elapsed = ?clock.elapsed(), "snapshot done");
    Ok(stats)
}

fn start_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Lists everything under `root` but `root` itself, parents before their
/// children. (A parallel walk measured slower on two cores: the stat cache
/// is parsed on the other one meanwhile.)
fn walk(root: &Path, options: &SnapshotOptions) -> Result<Vec<Entry>, SnapshotError> {
    let excludes = exclude_matcher(root, &options.exclude)?;
    let walker = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .git_ignore(options.gitignore)
        .require_git(false)
        .follow_links(false)
        .filter_entry(move |e| {
            let is_dir = e.file_type().is_some_and(|t| t.is_dir());
            !excludes.matched(e.path(), is_dir).is_ignore()
        })
        .build();
    let mut entries = Vec::new();
    for item in walker {
        let item = item.map_err(|e| walk_error(root, e))?;
        entries.extend(classify(root, &item)?);
    }
    Ok(entries)
}

/// The entry for one walked path; `None` for the root itself.
fn classify(root: &Path, item: &ignore::DirEntry) -> Result<Option<Entry>, SnapshotError> {
    if item.depth() == 0 {
        return Ok(None);
    }
    let path = item.path();
    let rel = relative(root, path)?;
    let file_type = item.file_type().expect("only stdin has no file type");
    let kind = if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_file() {
        Kind::File
    } else if file_type.is_symlink() {
        Kind::Symlink
    } else {
        return Err(unsupported(path, &file_type));
    };
    Ok(Some(Entry { rel, kind }))
}

fn exclude_matcher(root: &Path, patterns: &[String]) -> Result<Gitignore, SnapshotError> {
    let mut builder = GitignoreBuilder::new(root);
    for p in patterns {
        builder
            .add_line(None, p)
            .map_err(|e| SnapshotError::BadPattern {
                pattern: p.clone(),
                reason: e.to_string(),
            })?;
    }
    builder.build().map_err(|e| SnapshotError::BadPattern {
        pattern: patterns.join(" "),
        reason: e.to_string(),
    })
}

fn walk_error(root: &Path, e: ignore::Error) -> SnapshotError {
    let path = match &e {
        ignore::Error::WithPath { path, .. } => path.clone(),
        _ => root.to_path_buf(),
    };
    let io = e
        .into_io_error()
        .unwrap_or_else(|| std::io::Error::other("walk failed"));
    SnapshotError::io("reading", path, io)
}

fn relative(root: &Path, path: &Path) -> Result<String, SnapshotError> {
    let rel = path
        .strip_prefix(root)
        .expect("walked paths are under the root");
    let text = rel.to_str().ok_or_else(|| SnapshotError::BadName {
        path: path.to_path_buf(),
        reason: "name is not valid UTF-8".into(),
    })?;
    Ok(text.to_string())
}

fn unsupported(path: &Path, t: &std::fs::FileType) -> SnapshotError {
    use std::os::unix::fs::FileTypeExt;
    let kind = if t.is_socket() {
        "socket"
    } else if t.is_fifo() {
        "FIFO"
    } else {
        "device"
    };
    SnapshotError::Unsupported {
        path: path.to_path_buf(),
        kind,
    }
}

struct StoredFile {
    digest: Digest,
    stamp: FileStamp,
    was_read: bool,
}

fn file_entries(entries: &[Entry]) -> impl Iterator<Item = &Entry> {
    entries.iter().filter(|e| matches!(e.kind, Kind::File))
}

/// Below this many files, files are stored on the calling thread.
const PARALLEL_FROM: usize = 64;

/// Stores every file; the result is in the order of [`file_entries`].
fn store_files(
    store: &FsStore,
    root: &Path,
    entries: &[Entry],
    cache: &StatCache,
    progress: &dyn Progress,
) -> Result<Vec<StoredFile>, SnapshotError> {
    // Files are stat'ed relative to the root: the kernel then walks only
    // the path's components below it.
    let root_dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| SnapshotError::io("opening", root, err.into()))?;
    let store_one = |e: &Entry| -> Result<StoredFile, SnapshotError> {
        let stat = rustix::fs::statat(&root_dir, e.rel.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|err| SnapshotError::io("reading", root.join(&e.rel), err.into()))?;
        let stamp = FileStamp::from_stat(&stat);
        // A hit is trusted without looking at the blob: the cache is saved
        // only after its blobs are durable, and gc drops it.
        let (digest, was_read) = match cache.lookup(&e.rel, &stamp) {
            Some(d) => (d, false),
            None => (store.put_file(&root.join(&e.rel))?, true),
        };
        progress.advance(1, digest.size());
        Ok(StoredFile {
            digest,
            stamp,
            was_read,
        })
    };
    let files = file_entries(entries).collect::<Vec<_>>();
    if files.len() < PARALLEL_FROM {
        // A handful of files (a toolchain root's one binary): starting and
        // then idling the pool's threads would cost more than it saves.
        return files.into_iter().map(store_one).collect();
    }
    cairn_store::io_pool().install(|| files.par_iter().map(|e| store_one(e)).collect())
}

/// Encodes every directory, deepest first; returns the root's digest.
fn encode_directories(
    store: &FsStore,
    root: &Path,
    entries: &[Entry],
    files: &[StoredFile],
) -> Result<Digest, SnapshotError> {
    let mut builders: BTreeMap<&str, DirectoryBuilder> = BTreeMap::new();
    builders.insert("", DirectoryBuilder::new());
    for e in entries.iter().filter(|e| matches!(e.kind, Kind::Dir)) {
        builders.insert(&e.rel, DirectoryBuilder::new());
    }
    let mut files = files.iter();
    for e in entries {
        let (parent, name) = split_parent(&e.rel);
        check_name(root, &e.rel, name)?;
        let builder = builders
            .get_mut(parent)
            .expect("parents are walked before children");
        match e.kind {
            Kind::File => {
                let f = files.next().expect("one stored file per file entry");
                builder.file(name, f.digest, f.stamp.executable());
            }
            Kind::Symlink => {
                let path = root.join(&e.rel);
                let target = std::fs::read_link(&path)
                    .map_err(|err| SnapshotError::io("reading link", &path, err))?;
                let target = target.to_str().ok_or_else(|| SnapshotError::BadName {
                    path: path.clone(),
                    reason: "symlink target is not valid UTF-8".into(),
                })?;
                builder.symlink(name, target);
            }
            Kind::Dir => {}
        }
    }
    // Deepest first: a directory's path sorts after its parent's, so walk
    // in reverse order of depth.
    let mut dirs: Vec<&str> = builders.keys().copied().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(depth(d)));
    for dir in dirs {
        let builder = builders.remove(dir).expect("each directory once");
        let encoded = builder.build().map_err(|source| SnapshotError::BadName {
            path: root.join(dir),
            reason: source.to_string(),
        })?;
        let digest = store.put_bytes_sync(&encode_directory(&encoded))?;
        if dir.is_empty() {
            return Ok(digest);
        }
        let (parent, name) = split_parent(dir);
        builders
            .get_mut(parent)
            .expect("parent still pending")
            .directory(name, digest);
    }
    unreachable!("the root directory is always encoded last")
}

fn check_name(root: &Path, rel: &str, name: &str) -> Result<(), SnapshotError> {
    validate_name(name).map_err(|e| SnapshotError::BadName {
        path: root.join(rel),
        reason: e.to_string(),
    })
}

fn split_parent(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

fn depth(rel: &str) -> usize {
    if rel.is_empty() {
        0
    } else {
        rel.matches('/').count() + 1
    }
}
