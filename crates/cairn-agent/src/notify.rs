//! `sd_notify(3)`: telling systemd the agent is ready (`Type=notify`), what
//! it is doing, and that it is stopping.
//!
//! The protocol is one datagram of `KEY=value` lines to the Unix socket
//! named by `NOTIFY_SOCKET` (a path, or `@name` for the abstract
//! namespace); without it, nothing is sent. The caller reads the variable
//! (libraries do not read the environment).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where notifications go.
#[derive(Debug)]
pub struct Notifier {
    target: Option<SocketAddr>,
}

impl Notifier {
    /// A notifier for the `NOTIFY_SOCKET` value `socket` (`None`: silent).
    pub fn new(socket: Option<&str>) -> Self {
        let target = socket.and_then(|s| match s.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).ok(),
            None if s.starts_with('/') => SocketAddr::from_pathname(s).ok(),
            None => None,
        });
        Self { target }
    }

    /// Sends `state` (e.g. `"READY=1\nSTATUS=running"`); failures are
    /// ignored, as `sd_notify` callers do.
    pub fn notify(&self, state: &str) {
        if let Some(target) = &self.target {
            if let Ok(sock) = UnixDatagram::unbound() {
                let _ = sock.send_to_addr(state.as_bytes(), target);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_a_datagram_to_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.to_str());
        n.notify("READY=1\nSTATUS=running");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=running");
        Notifier::new(None).notify("READY=1");
        Notifier::new(Some("relative")).notify("READY=1");
    }
}
