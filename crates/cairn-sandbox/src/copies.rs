//! Where the private copies of `writable` mounts live: a tmpfs of their
//! own, mounted on a fresh directory under `$TMPDIR` (mode 0700), so what
//! a step writes to them is bounded like `/tmp` and is memory of its
//! cgroup, never the host's disk.
//!
//! The tmpfs is mounted without a size, filled with the copies, then
//! remounted with room for `limits.tmp_bytes` more than they take. Its
//! directory is named `cairn-sandbox-copies-<pid>-…`; one whose process is
//! gone (a `cairn` killed before it could unmount) is unmounted and
//! removed by the next sandbox that makes copies, as stale cgroups are.

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
        sweep_stale();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(err(&std::env::temp_dir()))?;
        let flags = libc::MS_NOSUID | libc::MS_NODEV;
        mount_tmpfs(dir.path(), flags, "mode=0700").map_err(err(dir.path()))?;
        let area = CopyArea { dir: Some(dir) };
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
    }
}

/// Unmounts and removes the areas of processes that are gone.
fn sweep_stale() {
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path: PathBuf = e.path();
        unmount(&path);
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::debug!(error = %e, path = %path.display(), "stale copies not removed");
        }
    }
}
