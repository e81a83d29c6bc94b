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
//!   boot. The step reads it empty.
//!
//! What else a fresh `/proc` shows of the host (its uptime, load, memory,
//! CPUs, the kernel's version and configuration) is listed, with why it is
//! left, in the threat model (docs/ARCHITECTURE.md).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The boot id every step reads, as a literal (for `concat!`).
macro_rules! boot_id {
    () => {
        "7c5f2e1a-3b9d-4e6c-8a0f-2d4b6e8c0a1e"
    };
}

/// The boot id every step reads.
pub const BOOT_ID: &str = boot_id!();

/// `(file in the sandbox, name of the host file bound over it, its
/// content)`; the host files live beside the staging directory, under the
/// same private parent, read-only (mode 0444, and bound read-only).
const MASKS: [(&str, &str, &str); 2] = [
    (
        "/proc/sys/kernel/random/boot_id",
        "boot_id",
        concat!(boot_id!(), "\n"),
    ),
    ("/proc/cmdline", "cmdline", "\n"),
];

/// `(file in the sandbox, host file bound over it)`.
pub(crate) fn masks(staging: &Path) -> impl Iterator<Item = (&'static Path, PathBuf)> + '_ {
    MASKS
        .iter()
        .map(|(target, name, _)| (Path::new(*target), staging.with_file_name(name)))
}

/// Writes the host files of [`MASKS`] unless they hold what they should;
/// each whole or not at all, as other processes may read them at once.
pub(crate) fn write_files(staging: &Path) -> std::io::Result<()> {
    for (_, name, content) in MASKS {
        let path = staging.with_file_name(name);
        if fs::read_to_string(&path).is_ok_and(|s| s == content) {
            continue;
        }
        let temporary = path.with_extension(std::process::id().to_string());
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o444)
            .open(&temporary)?;
        file.write_all(content.as_bytes())?;
        drop(file);
        fs::rename(&temporary, &path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_id_is_a_uuid_and_the_files_are_written_once_whole() {
        let parsed: Vec<usize> = BOOT_ID.split('-').map(str::len).collect();
        assert_eq!(parsed, [8, 4, 4, 4, 12]);
        assert!(BOOT_ID.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        let tmp = tempfile::tempdir().unwrap();
        let staging = tmp.path().join("root");
        write_files(&staging).unwrap();
        write_files(&staging).unwrap();
        let read = |name| fs::read_to_string(tmp.path().join(name)).unwrap();
        assert_eq!(read("boot_id"), format!("{BOOT_ID}\n"));
        assert_eq!(read("cmdline"), "\n");
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 2, "a temporary file is left");
    }
}
