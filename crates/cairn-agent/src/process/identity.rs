//! Telling a process apart from another that reused its pid, from `/proc`.
//!
//! A pid alone names whichever process has it now. The agent records, for
//! each service process it starts, the pid together with the process's
//! start time (field 22 of `/proc/<pid>/stat`, in clock ticks since boot)
//! and the boot id: a later process with the same pid has another start
//! time, and after a reboot the boot id differs. A pidfd opened for the pid
//! and then checked against the record pins the identity for good
//! ([`super::pidfd::Pidfd`]).

use std::io;
use std::path::Path;

/// Who a process is: pid, start time and boot.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// The process id.
    pub pid: i32,
    /// Its start time, in clock ticks since boot.
    pub start_time: u64,
    /// The boot it started in.
    pub boot_id: String,
}

impl Identity {
    /// The identity of the live process `pid`.
    pub fn of(pid: i32) -> io::Result<Self> {
        Ok(Self {
            pid,
            start_time: start_time(pid)?,
            boot_id: boot_id()?,
        })
    }

    /// Whether the process this identity names is still alive (a zombie
    /// counts as gone).
    pub fn is_alive(&self) -> bool {
        Self::of(self.pid).is_ok_and(|now| now == *self) && !is_zombie(self.pid)
    }
}

/// This boot's id.
pub fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

/// Fields of `/proc/<pid>/stat` after the command name (which may hold
/// spaces and parentheses, so the text is cut at the last `)`).
fn stat_fields(pid: i32) -> io::Result<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no ')' in stat"))?;
    Ok(after.split_whitespace().map(str::to_string).collect())
}

/// The start time of `pid` (field 22; the fields after the name start at 3).
pub fn start_time(pid: i32) -> io::Result<u64> {
    stat_fields(pid)?
        .get(22 - 3)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no start time in stat"))
}

fn is_zombie(pid: i32) -> bool {
    stat_fields(pid).is_ok_and(|f| f.first().map(String::as_str) == Some("Z"))
}

/// The session id of `pid` (field 6).
pub fn session(pid: i32) -> io::Result<i32> {
    stat_fields(pid)?
        .get(6 - 3)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no session in stat"))
}

/// The fd numbers at which `pid` holds the socket with inode `inode`.
pub fn fds_holding_socket(pid: i32, inode: u64) -> Vec<i32> {
    let want = format!("socket:[{inode}]");
    let dir = format!("/proc/{pid}/fd");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == Path::new(&want)))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Every process (by pid) that holds the socket with inode `inode`.
pub fn processes_holding_socket(inode: u64) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| !fds_holding_socket(*pid, inode).is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_stable_identity() {
        let me = std::process::id() as i32;
        let a = Identity::of(me).unwrap();
        assert_eq!(a, Identity::of(me).unwrap());
        assert!(a.is_alive());
        let other = Identity {
            start_time: a.start_time + 1,
            ..a.clone()
        };
        assert!(!other.is_alive(), "another start time is another process");
    }

    #[test]
    fn a_held_socket_is_found_by_its_inode() {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
            .unwrap()
            .ino();
        let me = std::process::id() as i32;
        assert_eq!(fds_holding_socket(me, inode), [listener.as_raw_fd()]);
        assert!(processes_holding_socket(inode).contains(&me));
    }
}
