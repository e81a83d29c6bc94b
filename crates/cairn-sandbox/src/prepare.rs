//! Host-side preparation before spawning: check sources, make private
//! copies of writable mounts, list the entries of a mount at `/`.
//!
//! A mount at `/` is not bound as the root itself: the root is always a
//! fresh tmpfs (so the sandbox can create `/out`, `/tmp`, `/dev`, `/proc`
//! and mount points without touching the input), and each top-level entry
//! of the `/` input is bound (directories, files) or recreated (symlinks)
//! on it. Entries named like the reserved paths are hidden by them.

use std::ffi::OsString;
use std::fs;
use std::fs::Permissions;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::copies::CopyArea;
use crate::error::SandboxError;
use crate::plan::{Mount, Plan, RESERVED};
use crate::script::Source;

/// A top-level entry of the `/` mount: name, source, symlink target if any.
pub(crate) type RootEntry = (OsString, Source, Option<PathBuf>);

fn scratch_err(path: &Path) -> impl FnOnce(io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Scratch {
        path: path.to_path_buf(),
        source,
    }
}

/// The plan's mounts resolved to host sources.
pub(crate) struct Prepared {
    /// The entries of the mount at `/`.
    pub root: Vec<RootEntry>,
    /// The other mounts, parents first.
    pub others: Vec<Source>,
    /// The private tmpfs (mode 0700) holding the copies of writable
    /// mounts, sized to them plus `limits.tmp_bytes`; only made if a mount
    /// is writable, so steps without one touch no host directory at all.
    pub scratch: Option<CopyArea>,
}

/// Resolves every mount to a host source, copying writable ones.
pub(crate) fn sources(plan: &Plan, owner: Option<(u32, u32)>) -> Result<Prepared, SandboxError> {
    let mut root = vec![];
    let mut others = vec![];
    let mut scratch = None;
    for (i, m) in plan.mounts_in_order().into_iter().enumerate() {
        let src = source(m, &mut scratch, i, owner)?;
        if m.target == Path::new("/") {
            root = root_entries(&src)?;
        } else {
            others.push(src);
        }
    }
    if let Some(area) = &scratch {
        area.seal(plan.limits.tmp_bytes)?;
    }
    Ok(Prepared {
        root,
        others,
        scratch,
    })
}

/// The copies' tmpfs, made on first use.
fn scratch_dir(scratch: &mut Option<CopyArea>) -> Result<&Path, SandboxError> {
    let area = match scratch.take() {
        Some(area) => area,
        None => CopyArea::new()?,
    };
    Ok(scratch.insert(area).path())
}

fn source(
    m: &Mount,
    scratch: &mut Option<CopyArea>,
    i: usize,
    owner: Option<(u32, u32)>,
) -> Result<Source, SandboxError> {
    let err = |source| SandboxError::Source {
        path: m.source.clone(),
        target: m.target.clone(),
        source,
    };
    let meta = fs::metadata(&m.source).map_err(err)?;
    let host = if m.writable {
        let copy = scratch_dir(scratch)?.join(format!("copy-{i}"));
        // Follow a symlinked source itself, like the read-only bind does.
        let from = fs::canonicalize(&m.source).map_err(err)?;
        copy_tree(&from, &copy, owner)?;
        copy
    } else {
        m.source.clone()
    };
    Ok(Source {
        target: m.target.clone(),
        host,
        is_dir: meta.is_dir(),
        writable: m.writable,
    })
}

fn root_entries(root: &Source) -> Result<Vec<RootEntry>, SandboxError> {
    let err = |source| SandboxError::Source {
        path: root.host.clone(),
        target: "/".into(),
        source,
    };
    let mut entries = vec![];
    for e in fs::read_dir(&root.host).map_err(err)? {
        let e = e.map_err(err)?;
        let name = e.file_name();
        if RESERVED
            .iter()
            .any(|r| Path::new(r) == Path::new("/").join(&name))
        {
            continue;
        }
        let ty = e.file_type().map_err(err)?;
        let host = e.path();
        let link = if ty.is_symlink() {
            Some(fs::read_link(&host).map_err(err)?)
        } else if ty.is_dir() || ty.is_file() {
            None
        } else {
            continue;
        };
        let src = Source {
            target: Path::new("/").join(&name),
            host,
            is_dir: ty.is_dir(),
            writable: root.writable,
        };
        entries.push((name, src, link));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// Copies a file or directory tree, keeping symlinks as symlinks,
/// permission bits (never setuid, setgid or sticky) and access and
/// modification times (a private copy looks like its source: the step
/// sees the same times whether a mount is writable or not); other special
/// files are skipped. With `owner`, every copy belongs to those host ids
/// (the step's), so the step can change its private copy.
fn copy_tree(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> Result<(), SandboxError> {
    let meta = fs::symlink_metadata(from).map_err(scratch_err(from))?;
    let ty = meta.file_type();
    if ty.is_symlink() {
        let target = fs::read_link(from).map_err(scratch_err(from))?;
        symlink(target, to).map_err(scratch_err(to))?;
    } else if ty.is_dir() {
        fs::create_dir(to).map_err(scratch_err(to))?;
        for e in fs::read_dir(from).map_err(scratch_err(from))? {
            let e = e.map_err(scratch_err(from))?;
            copy_tree(&e.path(), &to.join(e.file_name()), owner)?;
        }
        fs::set_permissions(to, Permissions::from_mode(meta.mode() & 0o777))
            .map_err(scratch_err(to))?;
    } else if ty.is_file() {
        fs::copy(from, to).map_err(scratch_err(to))?;
        fs::set_permissions(to, Permissions::from_mode(meta.mode() & 0o777))
            .map_err(scratch_err(to))?;
    } else {
        return Ok(());
    }
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(to, Some(uid), Some(gid)).map_err(scratch_err(to))?;
    }
    // Last: copying into a directory changes its times.
    copy_times(&meta, to).map_err(scratch_err(to))
}

/// Sets `to`'s access and modification times to those of `meta`, without
/// following a symlink.
fn copy_times(meta: &fs::Metadata, to: &Path) -> io::Result<()> {
    use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    };
    utimensat(CWD, to, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}
