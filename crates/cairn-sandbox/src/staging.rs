//! The host directory the sandbox's root tmpfs is mounted on.
//!
//! The sandbox's pid 1 mounts its root tmpfs on a host directory, inside
//! its own private mount namespace, and pivots into it; nothing is ever
//! written to the directory itself and the mount never shows on the host.
//! So one directory serves every step of every process of a user, at the
//! same time, and it is made once, not per step: creating and removing a
//! directory per step cost a file-system journal write each, and removing
//! it after the step had ended cost more: the directory was still a mount
//! point in the dying namespace, and `rmdir` detaches such mounts itself,
//! waiting for an RCU grace period (3–4 ms per step measured under load).
//!
//! The directory is `/run/cairn-sandbox/root` for root (next to the uid
//! slot locks; `$TMPDIR/cairn-sandbox-0/root` if `/run` is read-only) and
//! `$TMPDIR/cairn-sandbox-<uid>/root` for anyone else. Its
//! parent is made with mode 0700 and must be a real directory (not a
//! symlink) owned by the caller and closed to everyone else, so no other
//! user can swap what the path leads to.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::SandboxError;

/// Where root's staging directory lives (shared with the uid slot locks).
pub(crate) const ROOT_DIR: &str = "/run/cairn-sandbox";

/// The staging directory for this process's user, made on first use.
pub(crate) fn dir() -> Result<&'static Path, SandboxError> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir);
    }
    let euid = rustix::process::geteuid().as_raw();
    let own = std::env::temp_dir().join(format!("cairn-sandbox-{euid}"));
    // Root in a container may have a read-only `/run`: then `$TMPDIR`.
    let parents = match euid {
        0 => vec![PathBuf::from(ROOT_DIR), own],
        _ => vec![own],
    };
    let mut failed = None;
    for parent in parents {
        let staging = parent.join("root");
        match make_private_dir(&parent, euid, 0o700)
            .and_then(|()| make_private_dir(&staging, euid, 0o755))
            .and_then(|()| {
                crate::masks::write_files(&staging).map_err(|source| SandboxError::Scratch {
                    path: parent.clone(),
                    source,
                })
            }) {
            Ok(()) => return Ok(DIR.get_or_init(|| staging)),
            Err(e) => failed = Some(e),
        }
    }
    Err(failed.expect("at least one candidate"))
}

/// Makes directory `path` with `mode` unless it exists, then checks that it
/// is a directory (not a symlink) owned by `uid` that no one else may
/// write to (a parent made by [`dir`] is closed to everyone else).
pub(crate) fn make_private_dir(path: &Path, uid: u32, mode: u32) -> Result<(), SandboxError> {
    let err = |source| SandboxError::Scratch {
        path: path.to_path_buf(),
        source,
    };
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    let meta = fs::symlink_metadata(path).map_err(err)?;
    let closed = if mode == 0o700 { 0o077 } else { 0o022 };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & closed != 0 {
        return Err(err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "not a directory of uid {uid} closed to others (mode {:o}, owner {})",
                meta.mode() & 0o7777,
                meta.uid()
            ),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_open_to_others_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let uid = rustix::process::geteuid().as_raw();
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        assert!(make_private_dir(&open, uid, 0o700).is_err());
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        assert!(make_private_dir(&link, uid, 0o700).is_err());
        let fresh = tmp.path().join("fresh");
        make_private_dir(&fresh, uid, 0o700).unwrap();
        make_private_dir(&fresh, uid, 0o700).unwrap();
        assert!(make_private_dir(&fresh, uid + 1, 0o700).is_err());
    }
}
