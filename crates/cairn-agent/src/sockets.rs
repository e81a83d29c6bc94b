//! The listening sockets the agent holds and passes to the service.
//!
//! The agent binds each configured socket once and keeps it; every service
//! process gets a duplicate at fd 3, 4, … (`LISTEN_FDS`, systemd's
//! convention). During a swap old and new process accept on the same
//! socket, and the kernel keeps queued connections in the socket, not in a
//! process, so none is refused while one process stops.
//!
//! **Probe twins.** A health probe sent to the shared socket could be
//! answered by the old process. So a process being health-checked also
//! gets, for each socket a probe names, a private *twin*: a listener on an
//! ephemeral loopback port (or a Unix socket in the state directory), passed
//! under the same name after the shared sockets. The service accepts on
//! every fd it is given; the agent probes the twin, which only that process
//! holds. The twin's address is recorded, so probes can continue after the
//! agent restarts.
//!
//! **After the agent's own restart** the sockets are held by the running
//! service only. The agent records each socket's inode; on restart it looks
//! for that inode in the adopted process's fd table (`/proc/<pid>/fd`) and
//! takes a duplicate with `pidfd_getfd` ([`reclaim`]), so the next process
//! gets the very same socket and its queue. Binding again (`SO_REUSEPORT`)
//! would split the queue in two, and connections queued on the half whose
//! process stops would be reset; a separate process holding the fds would
//! be one more thing that can die. Only when no live process holds the
//! socket is it bound afresh.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::config::SocketAddress;
use crate::process::ServiceProcess;

/// The listen backlog: connections the kernel queues while no process
/// accepts (during a swap, or a restart after a crash).
const BACKLOG: i32 = 4096;

/// A socket the agent holds.
#[derive(Debug)]
pub struct HeldSocket {
    /// Its name (as in `LISTEN_FDNAMES`).
    pub name: String,
    /// Where it listens.
    pub address: SocketAddress,
    /// The listening socket.
    pub fd: OwnedFd,
    /// Its inode, which identifies it in any process's fd table.
    pub inode: u64,
}

/// A private probe listener and where to reach it.
#[derive(Debug)]
pub struct ProbeTwin {
    /// The listening socket (passed to one process only).
    pub fd: OwnedFd,
    /// Where the probe connects.
    pub address: ProbeAddress,
}

/// Where a probe twin listens.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeAddress {
    /// A loopback TCP port.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// The inode of a socket fd.
pub fn inode(fd: &OwnedFd) -> io::Result<u64> {
    Ok(std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))?.ino())
}

fn listen(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: listen(2) on a bound socket we own; raises the backlog.
    if unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds `address` and listens.
pub fn bind(name: &str, address: &SocketAddress) -> io::Result<HeldSocket> {
    let fd: OwnedFd = match address {
        SocketAddress::Tcp(a) => TcpListener::bind(a)?.into(),
        SocketAddress::Unix(path) => {
            remove_stale_unix_socket(path)?;
            UnixListener::bind(path)?.into()
        }
    };
    listen(&fd)?;
    Ok(HeldSocket {
        name: name.to_string(),
        address: address.clone(),
        inode: inode(&fd)?,
        fd,
    })
}

/// A Unix socket file nobody listens on is left over from a process that
/// died; one somebody listens on is in use.
fn remove_stale_unix_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by another process", path.display()),
                ));
            }
            std::fs::remove_file(path)
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A private twin for a process's probes, in the same address family as
/// `of`; Unix twins live in `run_dir`, named after `tag`.
pub fn twin(of: &SocketAddress, run_dir: &Path, tag: &str) -> io::Result<ProbeTwin> {
    let (fd, address): (OwnedFd, _) = match of {
        SocketAddress::Tcp(a) => {
            let loopback: SocketAddr = if a.is_ipv4() {
                "127.0.0.1:0".parse().expect("valid")
            } else {
                "[::1]:0".parse().expect("valid")
            };
            let l = TcpListener::bind(loopback)?;
            let local = l.local_addr()?;
            (l.into(), ProbeAddress::Tcp(local))
        }
        SocketAddress::Unix(_) => {
            // Only the agent connects to a twin (the process gets its fd).
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(run_dir)?;
            let path = run_dir.join(format!("{tag}.sock"));
            let _ = std::fs::remove_file(&path);
            (UnixListener::bind(&path)?.into(), ProbeAddress::Unix(path))
        }
    };
    listen(&fd)?;
    Ok(ProbeTwin { fd, address })
}

/// A duplicate of the socket with inode `inode` from `process`'s fds, if
/// it holds it.
pub fn reclaim(process: &ServiceProcess, inode: u64) -> Option<OwnedFd> {
    let fds = crate::process::identity::fds_holding_socket(process.pid(), inode);
    let fd = process.pidfd().get_fd(*fds.first()?).ok()?;
    (self::inode(&fd).ok()? == inode).then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_tcp_and_unix_and_refuses_a_live_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let tcp = bind("http", &SocketAddress::Tcp("127.0.0.1:0".parse().unwrap())).unwrap();
        assert!(tcp.inode > 0);
        let path = dir.path().join("s.sock");
        let unix = bind("api", &SocketAddress::Unix(path.clone())).unwrap();
        let err = bind("api", &SocketAddress::Unix(path.clone())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        drop(unix);
        // Nobody listens any more: the leftover file is removed and bound.
        bind("api", &SocketAddress::Unix(path)).unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(bind("x", &SocketAddress::Unix(file)).is_err());
    }

    #[test]
    fn twins_listen_on_loopback_or_in_the_run_dir() {
        let dir = tempfile::tempdir().unwrap();
        let t = twin(
            &SocketAddress::Tcp("0.0.0.0:80".parse().unwrap()),
            dir.path(),
            "g1",
        )
        .unwrap();
        let ProbeAddress::Tcp(a) = t.address else {
            panic!()
        };
        assert!(a.ip().is_loopback() && a.port() != 0);
        std::net::TcpStream::connect(a).unwrap();
        let run = dir.path().join("run");
        let u = twin(&SocketAddress::Unix("/x".into()), &run, "g1-http").unwrap();
        assert_eq!(u.address, ProbeAddress::Unix(run.join("g1-http.sock")));
        let mode = std::fs::metadata(&run).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700, "only the agent connects to a twin");
    }
}
