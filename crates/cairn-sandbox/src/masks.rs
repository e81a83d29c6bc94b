//! Files of the step's fresh `/proc` that would show it the host, each
//! covered by a read-only bind of something that shows nothing.
//!
//! A fresh procfs is the pid namespace's, but a few of its files are the
//! machine's whatever the namespace:
//!
//! * `/proc/sys/kernel/random/boot_id` identifies the host's boot, the
//!   same for every process on it: a step could tell which machine and
//!   which boot built it, and a build that records it is not reproducible.
//!   The step reads [`BOOT_ID`], the same for every step everywhere (a
//!   well-formed UUID, so tools that parse it still work).
//! * `/proc/cmdline` is the host kernel's command line, which may carry
//!   the host's configuration and, on some machines, credentials given at
//!   boot. The step reads it empty (`/dev/null`).
//!
//! What else a fresh `/proc` shows of the host (its uptime, load, memory,
//! CPUs, the kernel's version and configuration) is listed, with why it is
//! left, in the threat model (docs/ARCHITECTURE.md).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The boot id every step reads.
pub const BOOT_ID: &str = "7c5f2e1a-3b9d-4e6c-8a0f-2d4b6e8c0a1e";

/// `(file in the sandbox, host file bound over it)`, the second relative
/// to the staging directory's parent when it is not absolute.
pub(crate) fn masks(staging: &Path) -> [(&'static Path, PathBuf); 2] {
    [
        (
            Path::new("/proc/sys/kernel/random/boot_id"),
            boot_id_file(staging),
        ),
        (Path::new("/proc/cmdline"), PathBuf::from("/dev/null")),
    ]
}

/// Where the file holding [`BOOT_ID`] lives: beside the staging directory,
/// under the same private parent.
fn boot_id_file(staging: &Path) -> PathBuf {
    staging.with_file_name("boot_id")
}

/// Writes the file holding [`BOOT_ID`] (mode 0444) unless it holds it
/// already; whole or not at all, as other processes may read it at once.
pub(crate) fn write_boot_id(staging: &Path) -> std::io::Result<()> {
    let path = boot_id_file(staging);
    let want = format!("{BOOT_ID}\n");
    if fs::read_to_string(&path).is_ok_and(|s| s == want) {
        return Ok(());
    }
    let temporary = path.with_extension(std::process::id().to_string());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o444)
        .open(&temporary)?;
    file.write_all(want.as_bytes())?;
    drop(file);
    fs::rename(&temporary, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_id_is_a_uuid_and_its_file_is_written_once_whole() {
        let parsed: Vec<usize> = BOOT_ID.split('-').map(str::len).collect();
        assert_eq!(parsed, [8, 4, 4, 4, 12]);
        assert!(BOOT_ID.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        let tmp = tempfile::tempdir().unwrap();
        let staging = tmp.path().join("root");
        write_boot_id(&staging).unwrap();
        write_boot_id(&staging).unwrap();
        let file = tmp.path().join("boot_id");
        assert_eq!(fs::read_to_string(&file).unwrap(), format!("{BOOT_ID}\n"));
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "a temporary file is left");
    }
}
