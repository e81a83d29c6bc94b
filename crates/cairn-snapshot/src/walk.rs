//! Walking a directory: every path under it, with its kind, parents
//! before children, symlinks never followed.
//!
//! Two walkers with one meaning. Without `.gitignore` files to honour (the
//! common case, and every build input), the walk reads directories itself
//! with `getdents64` relative to already-open directory descriptors, taking
//! each entry's kind from the directory entry: no `stat`, no absolute path
//! built per entry, and a symlink's target read there (`readlinkat`
//! relative to the open directory) unless the link memory has it
//! (`links.rs`). With `.gitignore` files, the `ignore`
//! crate (ripgrep's walker) applies their rules. Both apply the `--exclude`
//! patterns with gitignore semantics and prune an excluded directory whole.

use std::ffi::CStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rustix::fd::OwnedFd;
use rustix::fs::{FileType, Mode, OFlags};

use crate::error::SnapshotError;
use crate::links::{DirLinks, DirStamp, LinkMemory};
use crate::snapshot::SnapshotOptions;

/// What a walked entry is.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink (never followed), with its target when the walk read it
    /// (relative to the open directory: one name to look up, not a path).
    Symlink(Option<Vec<u8>>),
}

/// One path under the root.
pub(crate) struct Entry {
    /// Relative to the root, `/`-separated.
    pub rel: String,
    /// Its kind.
    pub kind: Kind,
}

/// What a walk found.
#[derive(Default)]
pub(crate) struct Walk {
    /// Everything under the root but the root, parents before children.
    pub entries: Vec<Entry>,
    /// The symlinks of each directory that has some, for the link memory
    /// (the walk without `.gitignore` files only).
    pub links: Vec<DirLinks>,
    /// How many of their targets were read rather than remembered.
    pub links_read: usize,
}

/// Lists everything under `root` but `root` itself, parents before their
/// children, taking symlinks' targets from `memory` where it has them.
/// (A parallel walk measured slower on two cores: the stat cache is parsed
/// on the other one meanwhile.)
pub(crate) fn walk(
    root: &Path,
    options: &SnapshotOptions,
    memory: &LinkMemory,
) -> Result<Walk, SnapshotError> {
    let excludes = exclude_matcher(root, &options.exclude)?;
    if !options.gitignore {
        return walk_directories(root, &excludes, memory);
    }
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
    Ok(Walk {
        entries,
        ..Walk::default()
    })
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
        Kind::Symlink(None)
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

pub(crate) fn unsupported(path: &Path, t: &std::fs::FileType) -> SnapshotError {
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

/// Bytes of directory entries one `getdents64` call returns at most: a
/// directory of a few hundred entries is read in one call, and the buffer
/// is reused for every directory of the walk.
const GETDENTS_BUFFER: usize = 32 << 10;

/// The walk without `.gitignore` files: depth first, each directory read
/// with `getdents64` and its subdirectories opened relative to it, so only
/// the directories on the current path are open at once.
fn walk_directories(
    root: &Path,
    excludes: &Gitignore,
    memory: &LinkMemory,
) -> Result<Walk, SnapshotError> {
    struct Frame {
        fd: OwnedFd,
        subdirs: Vec<String>,
        next: usize,
    }
    let mut walk = Walk::default();
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); GETDENTS_BUFFER];
    let fd = open_dir(root, None, "")?;
    let subdirs = read_dir(root, &fd, "", excludes, memory, &mut walk, &mut buf)?;
    let mut stack = vec![Frame {
        fd,
        subdirs,
        next: 0,
    }];
    while let Some(top) = stack.last_mut() {
        let Some(rel) = top.subdirs.get(top.next).cloned() else {
            stack.pop();
            continue;
        };
        top.next += 1;
        let name = rel.rsplit('/').next().expect("a relative path has a name");
        let fd = open_dir(root, Some(&top.fd), name).map_err(|e| with_path(e, root, &rel))?;
        let subdirs = read_dir(root, &fd, &rel, excludes, memory, &mut walk, &mut buf)?;
        stack.push(Frame {
            fd,
            subdirs,
            next: 0,
        });
    }
    Ok(walk)
}

/// Opens a directory (never through a symlink) relative to `at`, or `root`.
fn open_dir(root: &Path, at: Option<&OwnedFd>, name: &str) -> Result<OwnedFd, SnapshotError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match at {
        Some(at) => rustix::fs::openat(at, name, flags, Mode::empty()),
        None => rustix::fs::open(root, flags, Mode::empty()),
    }
    .map_err(|e| SnapshotError::io("reading", root, e.into()))
}

fn with_path(e: SnapshotError, root: &Path, rel: &str) -> SnapshotError {
    match e {
        SnapshotError::Io { action, source, .. } => SnapshotError::Io {
            action,
            path: root.join(rel),
            source,
        },
        other => other,
    }
}

/// Appends the entries of the directory `fd` (at `prefix`) to `walk`,
/// excluded ones left out; returns its subdirectories' relative paths.
/// `fd` is read from its start with `getdents64` into `buf` (no second
/// descriptor, unlike `readdir`: the directory was just opened).
fn read_dir(
    root: &Path,
    fd: &OwnedFd,
    prefix: &str,
    excludes: &Gitignore,
    memory: &LinkMemory,
    walk: &mut Walk,
    buf: &mut [std::mem::MaybeUninit<u8>],
) -> Result<Vec<String>, SnapshotError> {
    let shown = || root.join(prefix);
    let mut dir = rustix::fs::RawDir::new(fd, buf);
    let mut subdirs = Vec::new();
    // Taken at the first symlink: a directory without any costs no `fstat`.
    let mut links: Option<DirectoryLinks> = None;
    while let Some(item) = dir.next() {
        let item = item.map_err(|e| SnapshotError::io("reading", shown(), e.into()))?;
        let Some(name) = entry_name(item.file_name(), root, prefix)? else {
            continue; // "." and ".."
        };
        let rel = if prefix.is_empty() {
            name.to_owned()
        } else {
            let mut rel = String::with_capacity(prefix.len() + 1 + name.len());
            rel.push_str(prefix);
            rel.push('/');
            rel.push_str(name);
            rel
        };
        let file_type = match item.file_type() {
            FileType::Unknown => {
                rustix::fs::statat(fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                    .map(|st| FileType::from_raw_mode(st.st_mode))
                    .map_err(|e| SnapshotError::io("reading", root.join(&rel), e.into()))?
            }
            t => t,
        };
        let kind = match file_type {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink(None),
            FileType::Socket => return Err(unsupported_kind(root.join(&rel), "socket")),
            FileType::Fifo => return Err(unsupported_kind(root.join(&rel), "FIFO")),
            _ => return Err(unsupported_kind(root.join(&rel), "device")),
        };
        let is_dir = matches!(kind, Kind::Dir);
        if excludes.matched(&rel, is_dir).is_ignore() {
            continue;
        }
        let kind = match kind {
            Kind::Symlink(None) => {
                let links = links.get_or_insert_with(|| DirectoryLinks::of(fd, memory));
                let target = links
                    .target(fd, name)
                    .map_err(|e| SnapshotError::io("reading link", root.join(&rel), e.into()))?;
                Kind::Symlink(Some(target))
            }
            kind => kind,
        };
        if is_dir {
            subdirs.push(rel.clone());
        }
        walk.entries.push(Entry { rel, kind });
    }
    if let Some(links) = links {
        walk.links_read += links.read;
        walk.links.extend(links.found);
    }
    Ok(subdirs)
}

/// The symlinks of the directory being read.
struct DirectoryLinks<'m> {
    /// What the memory has of it, if it is unchanged.
    remembered: Option<crate::links::Remembered<'m>>,
    /// Its stamp and links, for the memory; `None` if it cannot be stamped.
    found: Option<DirLinks>,
    read: usize,
}

impl<'m> DirectoryLinks<'m> {
    /// Stamps the directory `fd` (before any of its targets is read, so
    /// the targets are at least as new as the stamp).
    fn of(fd: &OwnedFd, memory: &'m LinkMemory) -> Self {
        let stamp = rustix::fs::fstat(fd)
            .ok()
            .map(|st| DirStamp::from_stat(&st));
        Self {
            remembered: stamp.as_ref().and_then(|s| memory.of(s)),
            found: stamp.map(|stamp| DirLinks {
                stamp,
                links: Vec::new(),
            }),
            read: 0,
        }
    }

    /// The target of the link `name`: remembered, or read.
    fn target(&mut self, fd: &OwnedFd, name: &str) -> rustix::io::Result<Vec<u8>> {
        let remembered = self
            .remembered
            .as_mut()
            .and_then(|r| r.target(name.as_bytes()));
        let target = match remembered {
            Some(target) => target,
            None => {
                self.read += 1;
                rustix::fs::readlinkat(fd, name, Vec::new())?.into_bytes()
            }
        };
        if let Some(found) = &mut self.found {
            found.links.push((name.as_bytes().to_vec(), target.clone()));
        }
        Ok(target)
    }
}

/// An entry's name as UTF-8; `None` for `.` and `..`.
fn entry_name<'a>(
    name: &'a CStr,
    root: &Path,
    prefix: &str,
) -> Result<Option<&'a str>, SnapshotError> {
    let bytes = name.to_bytes();
    if bytes == b"." || bytes == b".." {
        return Ok(None);
    }
    std::str::from_utf8(bytes).map(Some).map_err(|_| {
        let raw = std::ffi::OsStr::from_bytes(bytes);
        SnapshotError::BadName {
            path: root.join(prefix).join(raw),
            reason: "name is not valid UTF-8".into(),
        }
    })
}

fn unsupported_kind(path: std::path::PathBuf, kind: &'static str) -> SnapshotError {
    SnapshotError::Unsupported { path, kind }
}
