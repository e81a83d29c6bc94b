//! Snapshotting a local file or directory into the store.
//!
//! Three phases: walk the directory (names and kinds only), store every
//! file in parallel (one `lstat` each, and a read only when the stat cache
//! misses), then encode directories deepest first so each parent knows its
//! children's digests. The last phase is skipped when the stat cache's
//! tree record shows the same inputs made the same tree before and its
//! directory blobs are still whole in the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cairn_digest::Digest;
use cairn_store::FsStore;
use cairn_tree::{encode_directory, validate_name, DirectoryBuilder};
use rayon::prelude::*;
use rustix::fs::{AtFlags, Mode, OFlags};

use crate::error::SnapshotError;
use crate::fingerprint::tree_fingerprint;
use crate::links::{DirLinks, LinkMemory};
use crate::stat_cache::{
    now_secs, BlobStamp, Entry as CacheEntry, FileStamp, StatCache, TreeRecord,
};
use crate::walk::{unsupported, walk, Entry, Kind};
use crate::Progress;

/// How long a claim (or a blob's own writing) keeps it safe from a
/// concurrent collection before a snapshot that reuses it claims it again.
const RECLAIM_AFTER_SECS: i64 = cairn_store::fs::claims::CLAIM_SLOT.as_secs() as i64;

/// From this size of stat cache file (about 550 files) on, it is read
/// on a thread of its own while the directory is walked.
const LOAD_BESIDE_THE_WALK_FROM: u64 = 64 * 1024;

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
    /// A build's input, for the action key only: a stat cache hit is
    /// taken on the file's own metadata, without looking at its blob (nor
    /// claiming it). The file blobs are not needed when the action is
    /// cached; a build that runs a step confirms the snapshot first
    /// ([`snapshot_unconfirmed`], [`Unconfirmed::confirm`]), which
    /// re-stores what the store lost, and a release never sets this. The
    /// directory blobs are still checked (and written again if gone):
    /// grafting the action's input root reads them. Never for `store
    /// add`, whose promise is that the store holds what it printed.
    pub trust_hits: bool,
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
    /// Symlinks whose target had to be read (link memory misses).
    pub links_read: u64,
}

/// Snapshots `path` into `store`.
pub fn snapshot(
    store: &FsStore,
    path: &Path,
    options: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<Added, SnapshotError> {
    match take(store, path, options, progress)? {
        Taken::File(added) => Ok(added),
        Taken::Tree(mut walked, cache) => finish(store, &mut walked, cache, options),
    }
}

/// A snapshot taken with [`SnapshotOptions::trust_hits`], kept whole so
/// that [`Unconfirmed::confirm`] can check its file blobs later without
/// walking the directory again.
pub struct Unconfirmed {
    added: Added,
    /// The walk and its files; `None` for a single file, stored whole.
    walked: Option<(Walked, SnapshotOptions)>,
}

/// Snapshots `path` as [`snapshot`] does with
/// [`SnapshotOptions::trust_hits`] set, and keeps what it walked: a build
/// takes an input's action key from this, and confirms it only if the
/// step has to run.
pub fn snapshot_unconfirmed(
    store: &FsStore,
    path: &Path,
    options: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<(Added, Unconfirmed), SnapshotError> {
    let options = SnapshotOptions {
        trust_hits: true,
        ..options.clone()
    };
    let (added, walked) = match take(store, path, &options, progress)? {
        Taken::File(added) => (added, None),
        Taken::Tree(mut walked, cache) => {
            let added = finish(store, &mut walked, cache, &options)?;
            (added, Some((walked, options)))
        }
    };
    Ok((added, Unconfirmed { added, walked }))
}

impl Unconfirmed {
    /// What the snapshot stored, its file blobs unchecked.
    pub fn added(&self) -> Added {
        self.added
    }

    /// Checks the file blobs the snapshot took on the stat cache alone, as
    /// a snapshot without `trust_hits` would have: a blob the store lost,
    /// or one changed in place, is stored again from its file, and stale
    /// claims are renewed. The directory is not walked again: its names,
    /// kinds and symlink targets are the ones the action key was taken on,
    /// and what a step mounts comes from the store, not from the source.
    /// A file whose content changed since makes a different tree, which
    /// the caller compares with [`Unconfirmed::added`]. Once confirmed,
    /// later calls return the same at no cost; one that failed can be
    /// made again.
    pub fn confirm(&mut self, store: &FsStore) -> Result<Added, SnapshotError> {
        let Some((walked, options)) = &mut self.walked else {
            return Ok(self.added);
        };
        let strict = SnapshotOptions {
            trust_hits: false,
            ..options.clone()
        };
        let Walked {
            root,
            entries,
            files,
            ..
        } = walked;
        for (e, f) in file_entries(entries).zip(files.iter_mut()) {
            if f.unchecked {
                *f = trust_hit(store, f.as_cache_entry(), &|| root.join(&e.rel))?;
            }
        }
        let cache = StatCache::load(store, root);
        let added = finish(store, walked, cache, &strict)?;
        // Confirmed once: later calls answer without looking again.
        (self.added, self.walked) = (added, None);
        Ok(added)
    }
}

/// A directory walked and its files stored (or taken on the stat cache).
struct Walked {
    root: PathBuf,
    entries: Vec<Entry>,
    files: Vec<StoredFile>,
    /// The symlinks found, for the link memory, if any had to be read.
    links: Option<Vec<DirLinks>>,
    links_read: usize,
    /// When the snapshot started (ns since the epoch).
    start: i64,
    clock: Instant,
}

enum Taken {
    File(Added),
    Tree(Walked, StatCache),
}

/// Walks `path` and stores its files: the first two phases.
fn take(
    store: &FsStore,
    path: &Path,
    options: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<Taken, SnapshotError> {
    let start = start_ns();
    let meta =
        std::fs::symlink_metadata(path).map_err(|e| SnapshotError::io("reading", path, e))?;
    if meta.is_file() {
        // Flushed on its own: a `syncfs` would also wait for every other
        // writer's dirty data on the file system.
        let digest = store.put_file_durable(path)?;
        store.sync_written()?;
        progress.advance(1, digest.size());
        return Ok(Taken::File(Added {
            digest,
            is_tree: false,
            files: 1,
            bytes: digest.size(),
            files_read: 1,
            links_read: 0,
        }));
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
    let load = || match options.seen_once {
        true => StatCache::default(),
        false => StatCache::load(store, &root),
    };
    // A large stat cache is read while the directory is walked; a small
    // one costs less to read than a thread costs to start.
    let memory = match options.seen_once {
        true => LinkMemory::default(),
        false => LinkMemory::load(&StatCache::links_file(store, &root)),
    };
    let (walk, cache) =
        if options.seen_once || StatCache::file_len(store, &root) < LOAD_BESIDE_THE_WALK_FROM {
            (walk(&root, options, &memory)?, load())
        } else {
            std::thread::scope(|s| {
                let cache = s.spawn(load);
                let walked = walk(&root, options, &memory);
                let cache = cache.join().expect("loading the stat cache does not panic");
                walked.map(|w| (w, cache))
            })?
        };
    drop(memory);
    let (entries, links_read) = (walk.entries, walk.links_read);
    let links = (links_read > 0 && !options.seen_once).then_some(walk.links);
    tracing::debug!(entries = entries.len(), cached = cache.len(), elapsed = ?clock.elapsed(), "walked");
    let files = store_files(store, &root, &entries, &cache, options, progress)?;
    tracing::debug!(files = files.len(), elapsed = ?clock.elapsed(), "files stored");
    let walked = Walked {
        root,
        entries,
        files,
        links,
        links_read,
        start,
        clock,
    };
    Ok(Taken::Tree(walked, cache))
}

/// Claims what the stat cache reused, encodes the directories (or takes
/// the recorded tree) and saves the stat cache: the last phase.
fn finish(
    store: &FsStore,
    walked: &mut Walked,
    mut cache: StatCache,
    options: &SnapshotOptions,
) -> Result<Added, SnapshotError> {
    let Walked {
        root,
        entries,
        files,
        links,
        links_read,
        start,
        clock,
    } = walked;
    let claimed = !options.trust_hits && claim_reused(store, root, entries, files)?;
    let fingerprint = tree_fingerprint(
        entries,
        files.iter().map(|f| (f.digest, f.stamp.executable())),
    );
    let recorded = fingerprint.as_ref().and_then(|f| cache.tree_for(f));
    let (dirs, reused) = match recorded {
        Some(dirs) if store.keep_many_sync(&dirs)? => (dirs, true),
        _ => (encode_directories(store, root, entries, files)?, false),
    };
    let digest = *dirs.last().expect("the root directory is always encoded");
    let tree = fingerprint.map(|fingerprint| TreeRecord { fingerprint, dirs });
    tracing::debug!(reused, elapsed = ?clock.elapsed(), "directories encoded");
    let stats = Added {
        digest,
        is_tree: true,
        files: files.len() as u64,
        bytes: files.iter().map(|f| f.digest.size()).sum(),
        files_read: files.iter().filter(|f| f.was_read).count() as u64,
        links_read: *links_read as u64,
    };
    // Durable before the stat cache may vouch for them.
    store.sync_written()?;
    let changed = files.iter().any(|f| f.was_read || f.blob_changed);
    let tree_changed = tree.is_some() && !reused;
    if !options.seen_once && (changed || claimed || tree_changed || cache.len() != files.len()) {
        let entries = files
            .iter()
            .map(|f| CacheEntry {
                trusted: !f.stamp.is_racy(*start),
                ..f.as_cache_entry()
            })
            .collect();
        cache.save(store, entries, tree.as_ref());
    }
    if let Some(links) = links.take() {
        crate::links::save(store, &StatCache::links_file(store, root), &links, *start);
    }
    tracing::debug!(elapsed = ?clock.elapsed(), "snapshot done");
    Ok(stats)
}

fn start_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

struct StoredFile {
    digest: Digest,
    stamp: FileStamp,
    /// The blob file as seen whole after storing or checking it.
    blob: BlobStamp,
    /// When the blob was last claimed for this cache.
    claimed_secs: i64,
    /// Whether the file's content was read (a stat cache miss).
    was_read: bool,
    /// Whether the blob file's metadata differed from the cache's.
    blob_changed: bool,
    /// Taken on the file's stamp alone: its blob not looked at yet.
    unchecked: bool,
}

impl StoredFile {
    /// This file as the stat cache records it.
    fn as_cache_entry(&self) -> CacheEntry {
        CacheEntry {
            file: self.stamp,
            digest: self.digest,
            blob: self.blob,
            claimed_secs: self.claimed_secs,
            trusted: true,
        }
    }
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
    options: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<Vec<StoredFile>, SnapshotError> {
    // Files are stat'ed relative to their directory, kept open while a
    // worker goes through its files: the kernel then looks up one name.
    let root_dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| SnapshotError::io("opening", root, err.into()))?;
    let store_one = |dir: &mut OpenDir, i: usize, e: &Entry| -> Result<StoredFile, SnapshotError> {
        let stat = dir
            .stat(&root_dir, &e.rel)
            .map_err(|err| SnapshotError::io("reading", root.join(&e.rel), err.into()))?;
        let stamp = FileStamp::from_stat(&stat);
        let path = || root.join(&e.rel);
        let stored = match cache.lookup(i, &stamp) {
            Some(hit) if options.trust_hits => taken_on_stamp(hit),
            Some(hit) => trust_hit(store, hit, &path)?,
            None => store_read(store, stamp, &path(), false)?,
        };
        progress.advance(1, stored.digest.size());
        Ok(stored)
    };
    let files = file_entries(entries).collect::<Vec<_>>();
    if files.len() < PARALLEL_FROM {
        // A handful of files (a toolchain root's one binary): starting and
        // then idling the pool's threads would cost more than it saves.
        let mut dir = OpenDir::default();
        return files
            .iter()
            .enumerate()
            .map(|(i, e)| store_one(&mut dir, i, e))
            .collect();
    }
    if cache.len() >= files.len() - files.len() / 10 {
        // Nearly all stat cache hits: work for the CPUs, not the disk, so
        // one thread per core (the I/O pool's extra threads would only
        // compete for them).
        return on_each_core(&files, &|dir, i, e: &&Entry| store_one(dir, i, e));
    }
    cairn_store::io_pool().install(|| {
        files
            .par_iter()
            .enumerate()
            .map_init(OpenDir::default, |dir, (i, e)| store_one(dir, i, e))
            .collect()
    })
}

/// The directory a worker last stat'ed a file in, kept open.
#[derive(Default)]
struct OpenDir {
    rel: String,
    fd: Option<rustix::fd::OwnedFd>,
}

impl OpenDir {
    /// `lstat` of the file `rel` (relative to `root`), through its
    /// directory, which is opened (`O_PATH`) only when it changes.
    fn stat(
        &mut self,
        root: &rustix::fd::OwnedFd,
        rel: &str,
    ) -> rustix::io::Result<rustix::fs::Stat> {
        let (parent, name) = split_parent(rel);
        if parent.is_empty() {
            return rustix::fs::statat(root, name, AtFlags::SYMLINK_NOFOLLOW);
        }
        if self.fd.is_none() || self.rel != parent {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            self.fd = Some(rustix::fs::openat(root, parent, flags, Mode::empty())?);
            parent.clone_into(&mut self.rel);
        }
        let dir = self.fd.as_ref().expect("opened above");
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
    }
}

/// Runs `f` over `items` (with their positions) on one thread per core,
/// each taking a contiguous part and writing its results into its part of
/// one vector (no per-thread vectors appended afterwards: for 20,000 files
/// that copy touched another megabyte of fresh pages).
fn on_each_core<T: Sync, R: Send>(
    items: &[T],
    f: &(dyn Fn(&mut OpenDir, usize, &T) -> Result<R, SnapshotError> + Sync),
) -> Result<Vec<R>, SnapshotError> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let part = items.len().div_ceil(cores).max(1);
    let mut out: Vec<Option<R>> = Vec::with_capacity(items.len());
    out.resize_with(items.len(), || None);
    std::thread::scope(|s| {
        let mut parts = out.chunks_mut(part).zip(items.chunks(part)).enumerate();
        let first = parts.next();
        let workers: Vec<_> = parts
            .map(|(c, (slots, chunk))| s.spawn(move || fill(f, c * part, chunk, slots)))
            .collect();
        let mut result = first.map_or(Ok(()), |(_, (slots, chunk))| fill(f, 0, chunk, slots));
        for w in workers {
            let done = w.join().expect("a snapshot worker does not panic");
            result = result.and(done);
        }
        result
    })?;
    Ok(out
        .into_iter()
        .map(|r| r.expect("every item has its result"))
        .collect())
}

/// Runs `f` over `chunk` (starting at position `start`) into `slots`.
fn fill<T, R>(
    f: &(dyn Fn(&mut OpenDir, usize, &T) -> Result<R, SnapshotError> + Sync),
    start: usize,
    chunk: &[T],
    slots: &mut [Option<R>],
) -> Result<(), SnapshotError> {
    let mut dir = OpenDir::default();
    for (i, (slot, item)) in slots.iter_mut().zip(chunk).enumerate() {
        *slot = Some(f(&mut dir, start + i, item)?);
    }
    Ok(())
}

/// A stat cache hit, trusted only while its blob is present and its file
/// unchanged: absent or resized, the file is stored again; changed in
/// place (or replaced), the blob is re-hashed and, if it no longer matches,
/// replaced with the file's content.
fn trust_hit(
    store: &FsStore,
    hit: CacheEntry,
    path: &dyn Fn() -> std::path::PathBuf,
) -> Result<StoredFile, SnapshotError> {
    let Some(st) = store
        .blob_stat(&hit.digest)?
        .filter(|st| st.st_size as u64 == hit.digest.size())
    else {
        return store_read(store, hit.file, &path(), false);
    };
    let blob = BlobStamp::from_stat(&st);
    let blob_changed = blob != hit.blob;
    if blob_changed && !store.blob_is_intact(&hit.digest)? {
        return store_read(store, hit.file, &path(), true);
    }
    Ok(StoredFile {
        digest: hit.digest,
        stamp: hit.file,
        blob,
        claimed_secs: hit.claimed_secs,
        was_read: false,
        blob_changed,
        unchecked: false,
    })
}

/// A stat cache hit taken on the file's metadata alone
/// ([`SnapshotOptions::trust_hits`]): the blob as the cache last saw it.
fn taken_on_stamp(hit: CacheEntry) -> StoredFile {
    StoredFile {
        digest: hit.digest,
        stamp: hit.file,
        blob: hit.blob,
        claimed_secs: hit.claimed_secs,
        was_read: false,
        blob_changed: false,
        unchecked: true,
    }
}

/// Reads and stores a file (replacing its blob file if `replace`).
fn store_read(
    store: &FsStore,
    stamp: FileStamp,
    path: &Path,
    replace: bool,
) -> Result<StoredFile, SnapshotError> {
    let digest = if replace {
        store.replace_file(path)?
    } else {
        store.put_file(path)?
    };
    let blob = store
        .blob_stat(&digest)?
        .map(|st| BlobStamp::from_stat(&st))
        .unwrap_or_default();
    // Safe for now: written just now, or claimed by `put_file` if it was
    // old. Whether a claim was made is not known here, so none is
    // recorded: the next snapshot claims it if the blob is old by then.
    Ok(StoredFile {
        digest,
        stamp,
        blob,
        claimed_secs: 0,
        was_read: true,
        blob_changed: false,
        unchecked: false,
    })
}

/// Claims the blobs of stat cache hits that neither a claim nor their own
/// writing protected recently, then checks them again: a blob a collection
/// took meanwhile is stored again. Returns whether anything was claimed.
fn claim_reused(
    store: &FsStore,
    root: &Path,
    entries: &[Entry],
    files: &mut [StoredFile],
) -> Result<bool, SnapshotError> {
    let now = now_secs();
    let stale = |f: &StoredFile| {
        !f.was_read && now - f.claimed_secs.max(f.blob.written_secs()) >= RECLAIM_AFTER_SECS
    };
    let nodes: Vec<_> = files
        .iter()
        .filter(|f| stale(f))
        .map(|f| (f.digest, cairn_store::reach::Kind::Leaf))
        .collect();
    if nodes.is_empty() {
        return Ok(false);
    }
    store.claim(&nodes)?;
    for (e, f) in file_entries(entries).zip(files.iter_mut()) {
        if !stale(f) {
            continue;
        }
        let still = store
            .blob_stat(&f.digest)?
            .map(|st| BlobStamp::from_stat(&st));
        if still == Some(f.blob) {
            f.claimed_secs = now;
        } else {
            *f = store_read(store, f.stamp, &root.join(&e.rel), false)?;
        }
    }
    Ok(true)
}

/// Encodes and stores every directory, deepest first; returns their
/// digests, the root's last.
fn encode_directories(
    store: &FsStore,
    root: &Path,
    entries: &[Entry],
    files: &[StoredFile],
) -> Result<Vec<Digest>, SnapshotError> {
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
        match &e.kind {
            Kind::File => {
                let f = files.next().expect("one stored file per file entry");
                builder.file(name, f.digest, f.stamp.executable());
            }
            Kind::Symlink(read) => {
                let path = || root.join(&e.rel);
                let target = match read {
                    Some(bytes) => bytes.clone(),
                    None => std::fs::read_link(path())
                        .map_err(|err| SnapshotError::io("reading link", path(), err))?
                        .into_os_string()
                        .into_encoded_bytes(),
                };
                let target = String::from_utf8(target).map_err(|_| SnapshotError::BadName {
                    path: path(),
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
    let mut encoded = Vec::with_capacity(dirs.len());
    let mut digests = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let builder = builders.remove(dir).expect("each directory once");
        let built = builder.build().map_err(|source| SnapshotError::BadName {
            path: root.join(dir),
            reason: source.to_string(),
        })?;
        let bytes = encode_directory(&built);
        let digest = Digest::of(&bytes);
        encoded.push(bytes);
        digests.push(digest);
        if dir.is_empty() {
            // Stored together, deepest first: what is already stored is
            // claimed in one batch.
            store.put_hashed_many_sync(&digests, &encoded)?;
            return Ok(digests);
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
