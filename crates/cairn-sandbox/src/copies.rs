//! Where the private copies of `writable` mounts live: a tmpfs of their
//! own, mounted on a fresh directory under `$TMPDIR` (mode 0700), so what
//! a step writes to them is bounded like `/tmp` and is memory of its
//! cgroup, never the host's disk.
//!
//! The tmpfs is mounted without a size, filled with the copies, then
//! remounted with room for `limits.tmp_bytes` more than they take. Its
//! directory `cairn-sandbox-copies-<pid>-…` has a sibling `….lock` its
//! process holds under `flock(2)` for the area's life. An area whose lock
//! nobody holds (a `cairn` killed before it could unmount) is unmounted
//! and removed by the next sandbox that makes copies. The lock, not the
//! pid, says who is alive: a `cairn` in another pid namespace sharing
//! `$TMPDIR` has a pid that means nothing here.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::error::SandboxError;

/// The name every copy area's directory starts with.
const PREFIX: &str = "cairn-sandbox-copies-";

/// A mounted tmpfs for copies; unmounted and removed when dropped.
pub(crate) struct CopyArea {
    dir: Option<TempDir>,
    /// `<dir>.lock`, held while the area lives.
    lock: Option<(PathBuf, std::fs::File)>,
}

/// An area left without a lock file is judged by its age only after this
/// long (one being made has its lock within microseconds).
const UNLOCKED_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

fn lock_path(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Creates and locks `<dir>.lock`; `None` if a sweep took the area first.
fn hold(dir: &Path) -> Result<Option<(PathBuf, std::fs::File)>, SandboxError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = lock_path(dir);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(err(&path))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| err(&path)(e.into()))?;
    let linked = rustix::fs::fstat(&file).is_ok_and(|st| st.st_nlink > 0);
    Ok((linked && dir.is_dir()).then_some((path, file)))
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Scratch {
        path: path.to_path_buf(),
        source,
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("temporary paths have no NUL")
}

fn mount_tmpfs(path: &Path, flags: libc::c_ulong, data: &str) -> io::Result<()> {
    let (target, data) = (cpath(path), CString::new(data).expect("no NUL"));
    // SAFETY: valid C strings for the duration of the call.
    let r = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn unmount(path: &Path) {
    let target = cpath(path);
    // SAFETY: a valid C string; failure (not a mount point) is harmless.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
}

impl CopyArea {
    /// A new area (after removing stale ones).
    pub(crate) fn new() -> Result<Self, SandboxError> {
        sweep_stale(&std::env::temp_dir());
        let (dir, lock) = loop {
            let dir = tempfile::Builder::new()
                .prefix(&format!("{PREFIX}{}-", std::process::id()))
                .tempdir()
                .map_err(err(&std::env::temp_dir()))?;
            if let Some(lock) = hold(dir.path())? {
                break (dir, lock);
            }
        };
        let flags = libc::MS_NOSUID | libc::MS_NODEV;
        mount_tmpfs(dir.path(), flags, "mode=0700").map_err(err(dir.path()))?;
        let area = CopyArea {
            dir: Some(dir),
            lock: Some(lock),
        };
        // Not seen by, nor passed on to, other mount namespaces.
        let target = cpath(area.path());
        // SAFETY: a valid C string; MS_PRIVATE on our own mount.
        let r = unsafe {
            libc::mount(
                std::ptr::null(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(err(area.path())(io::Error::last_os_error()));
        }
        Ok(area)
    }

    /// The mounted directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until dropped").path()
    }

    /// Limits the area to what the copies take plus `room` bytes (no
    /// limit: stays as mounted).
    pub(crate) fn seal(&self, room: Option<u64>) -> Result<(), SandboxError> {
        let Some(room) = room else { return Ok(()) };
        let st = rustix::fs::statfs(self.path()).map_err(|e| err(self.path())(e.into()))?;
        let used = (st.f_blocks - st.f_bfree) * st.f_bsize as u64;
        let size = used.saturating_add(room);
        let flags = libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV;
        mount_tmpfs(self.path(), flags, &format!("size={size}")).map_err(err(self.path()))
    }
}

impl CopyArea {
    /// Whether less than a block is free.
    pub(crate) fn is_full(&self) -> bool {
        rustix::fs::statfs(self.path()).is_ok_and(|st| st.f_bavail == 0 || st.f_ffree == 0)
    }
}

impl Drop for CopyArea {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            unmount(dir.path());
            if let Err(e) = dir.close() {
                tracing::warn!(error = %e, "cannot remove the writable mounts' copies");
            }
        }
        if let Some((path, _held)) = self.lock.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Unmounts and removes the areas under `tmp` whose lock nobody holds.
fn sweep_stale(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str().filter(|n| n.starts_with(PREFIX)) else {
            continue;
        };
        if name.ends_with(".lock") {
            continue;
        }
        let path: PathBuf = e.path();
        let lock = lock_path(&path);
        let held = match std::fs::File::open(&lock) {
            Ok(file) => {
                match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                {
                    Ok(()) => Some(file),
                    Err(_) => continue, // its process lives
                }
            }
            // No lock file: made before locks were, or this instant.
            Err(_) => {
                let young = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().unwrap_or_default() < UNLOCKED_GRACE);
                if young {
                    continue;
                }
                None
            }
        };
        unmount(&path);
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::debug!(error = %e, path = %path.display(), "stale copies not removed");
        }
        if held.is_some() {
            let _ = std::fs::remove_file(&lock);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(path: &Path) -> std::fs::File {
        let file = std::fs::File::create(path).unwrap();
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
        file
    }

    #[test]
    fn an_area_is_swept_when_its_lock_is_free_whatever_its_pid_says() {
        let tmp = tempfile::tempdir().unwrap();
        // A pid that means nothing here, as one from another pid namespace.
        let live = tmp.path().join(format!("{PREFIX}999999999-live"));
        std::fs::create_dir(&live).unwrap();
        let held = lock(&lock_path(&live));
        sweep_stale(tmp.path());
        assert!(live.is_dir(), "a held area was swept by its pid");
        drop(held);
        sweep_stale(tmp.path());
        assert!(!live.exists() && !lock_path(&live).exists());
    }

    #[test]
    fn an_area_without_a_lock_is_swept_only_once_it_is_old() {
        let tmp = tempfile::tempdir().unwrap();
        let area = tmp
            .path()
            .join(format!("{PREFIX}{}-new", std::process::id()));
        std::fs::create_dir(&area).unwrap();
        sweep_stale(tmp.path());
        assert!(area.is_dir(), "an area being made was swept");
        let old = std::time::SystemTime::now() - 2 * UNLOCKED_GRACE;
        std::fs::File::open(&area)
            .unwrap()
            .set_modified(old)
            .unwrap();
        sweep_stale(tmp.path());
        assert!(!area.exists());
    }
}
