//! Which host uid and gid a step runs as.
//!
//! A step is uid/gid [`crate::SANDBOX_ID`] inside its user namespace. Run
//! by an ordinary user, that maps to the user (the kernel allows nothing
//! else). Run by root, it maps to an id of a dedicated range, as Nix's
//! build users: [`FIRST_HOST_ID`] + slot, one slot per step running at the
//! same time on the machine, held by a `flock` on
//! `/run/cairn-sandbox/slot-<n>` for the step's life. So files a step
//! creates are never root's, the id owns nothing else on the host, and
//! two concurrent steps are two different users even if one escaped its
//! namespaces. `nobody` would have been simpler, but it is shared with
//! every daemon that runs as it (NFS's anonymous user among them) and
//! with every other step.
//!
//! A step with an emulator also gets the slot's id in the range just
//! above ([`HOST_ID_SLOTS`] further) for its namespace's root, which owns
//! the sandbox's own binfmt_misc files; the step never runs as it.
//!
//! The range lies in the part of the 32-bit id space that systemd and
//! the usual allocators leave unused (above the container ranges, below
//! 2^31). When cairn is root inside a user namespace that does not map
//! the range (a rootless container), the step runs as `nobody` (65534)
//! if that is mapped, and the sandbox refuses to start otherwise.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::OnceLock;

use crate::error::SandboxError;

/// The first host uid and gid of the steps' range.
pub const FIRST_HOST_ID: u32 = 0x7c00_0000;
/// How many steps can run at once with ids of their own.
pub const HOST_ID_SLOTS: u32 = 256;
/// `nobody`: the fallback when the range is not mapped.
const NOBODY: u32 = 65534;
/// Where the slot locks live.
const LOCK_DIR: &str = crate::staging::ROOT_DIR;

/// The host ids a step runs as; a slot of the range stays reserved for as
/// long as this value lives.
#[derive(Debug)]
pub(crate) struct HostIds {
    pub uid: u32,
    pub gid: u32,
    /// Whether the ids differ from the caller's (cairn runs as root).
    pub dedicated: bool,
    /// A second host id of the slot (uid and gid alike), from the range
    /// just above the steps' own, for the namespace's root: mapped only
    /// for a step with an emulator, whose registration with the sandbox's
    /// binfmt_misc needs files the namespace's root owns (see
    /// `mounts::register_emulator`). The step never runs as it. `None`
    /// for an ordinary caller (the kernel lets it map its own id only) or
    /// where the range is not mapped.
    pub ns_root: Option<u32>,
    _slot: Option<File>,
}

impl HostIds {
    /// The caller's own ids, or a free slot of the range when root.
    pub(crate) fn acquire() -> Result<HostIds, SandboxError> {
        let (euid, egid) = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        if euid != 0 {
            return Ok(HostIds {
                uid: euid,
                gid: egid,
                dedicated: false,
                ns_root: None,
                _slot: None,
            });
        }
        if !range_is_mapped() {
            if !mapped(NOBODY, 1) {
                return Err(SandboxError::HostIds(format!(
                    "neither {FIRST_HOST_ID}..{} nor {NOBODY} is mapped in this user namespace",
                    FIRST_HOST_ID + HOST_ID_SLOTS
                )));
            }
            return Ok(HostIds {
                uid: NOBODY,
                gid: NOBODY,
                dedicated: true,
                ns_root: None,
                _slot: None,
            });
        }
        let (slot, lock) = take_slot()?;
        Ok(HostIds {
            uid: FIRST_HOST_ID + slot,
            gid: FIRST_HOST_ID + slot,
            dedicated: true,
            ns_root: roots_are_mapped().then_some(FIRST_HOST_ID + HOST_ID_SLOTS + slot),
            _slot: Some(lock),
        })
    }
}

/// Locks the first free slot, starting from one that depends on the
/// process and thread so concurrent callers rarely collide; waits for one
/// if all are taken.
fn take_slot() -> Result<(u32, File), SandboxError> {
    let dir = Path::new(LOCK_DIR);
    let err = |source: std::io::Error| SandboxError::Scratch {
        path: dir.to_path_buf(),
        source,
    };
    if !dir.is_dir() {
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
    }
    let start =
        std::process::id().wrapping_add(rustix::thread::gettid().as_raw_nonzero().get() as u32);
    let open = |slot: u32| {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(dir.join(format!("slot-{slot}")))
            .map_err(err)
    };
    for i in 0..HOST_ID_SLOTS {
        let slot = (start + i) % HOST_ID_SLOTS;
        let file = open(slot)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok((slot, file)),
            Err(rustix::io::Errno::WOULDBLOCK) => continue,
            Err(e) => return Err(err(e.into())),
        }
    }
    let slot = start % HOST_ID_SLOTS;
    let file = open(slot)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| err(e.into()))?;
    Ok((slot, file))
}

fn range_is_mapped() -> bool {
    static MAPPED: OnceLock<bool> = OnceLock::new();
    *MAPPED.get_or_init(|| mapped(FIRST_HOST_ID, HOST_ID_SLOTS))
}

fn roots_are_mapped() -> bool {
    static MAPPED: OnceLock<bool> = OnceLock::new();
    *MAPPED.get_or_init(|| mapped(FIRST_HOST_ID + HOST_ID_SLOTS, HOST_ID_SLOTS))
}

/// Whether ids `first..first+count` are all mapped (as uids and gids) in
/// this process's user namespace.
fn mapped(first: u32, count: u32) -> bool {
    ["/proc/self/uid_map", "/proc/self/gid_map"]
        .iter()
        .all(|file| {
            let text = fs::read_to_string(file).unwrap_or_default();
            covers(&text, first, count)
        })
}

/// Whether a `uid_map`-format text maps `first..first+count` (inside ids).
fn covers(map: &str, first: u32, count: u32) -> bool {
    map.lines().any(|line| {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        matches!(f[..], [inside, _, len]
            if inside <= u64::from(first) && u64::from(first) + u64::from(count) <= inside + len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_id_maps() {
        let init = "         0          0 4294967295\n";
        assert!(covers(init, FIRST_HOST_ID, HOST_ID_SLOTS));
        let rootless = "0 1000 1\n1 100000 65536\n";
        assert!(!covers(rootless, FIRST_HOST_ID, HOST_ID_SLOTS));
        assert!(covers(rootless, NOBODY, 1));
        assert!(!covers("", NOBODY, 1));
    }
}
