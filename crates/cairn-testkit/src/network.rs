//! A network of a test's own: a thread in a new network namespace, whose
//! loopback interface also carries the public-looking addresses
//! 203.0.113.1 and 203.0.113.2 (a documentation range), and in a new
//! mount namespace whose `/etc/hosts` is the test's, so a name can resolve
//! to any of them through the system's own resolver. Processes and
//! threads started from it inherit both; no traffic leaves it. Needs root
//! and `ip` (iproute2): without them the test fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

/// The `/etc/hosts` the network's resolver reads.
#[derive(Clone, Debug)]
pub struct Hosts {
    path: PathBuf,
}

impl Hosts {
    /// Replaces its text in place (the same file, so the bind mount sees it).
    pub fn set(&self, text: &str) {
        std::fs::write(&self.path, text).expect("rewriting the hosts file");
    }
}

/// Runs `f` on a thread of its own, in a new network namespace with
/// loopback up, carrying 203.0.113.1 and 203.0.113.2 too, and with
/// `hosts` as `/etc/hosts`.
pub fn in_a_network_of_its_own<T: Send + 'static>(
    hosts: &str,
    f: impl FnOnce(&Hosts) -> T + Send + 'static,
) -> T {
    let dir = std::env::temp_dir().join(format!(
        "cairn-testkit-hosts-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("a directory for the hosts file");
    let hosts_file = Hosts {
        path: dir.join("hosts"),
    };
    hosts_file.set(hosts);
    let result = thread::spawn(move || {
        use rustix::mount::{mount_bind, mount_change, MountPropagationFlags};
        use rustix::thread::{unshare_unsafe, UnshareFlags};
        // SAFETY: a network and a mount namespace (and, with it, a
        // file-system context) of this thread's own; nothing it shares
        // with other threads depends on either.
        unsafe { unshare_unsafe(UnshareFlags::NEWNET | UnshareFlags::NEWNS) }
            .expect("network and mount namespaces of its own (tests run as root)");
        mount_change(
            "/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )
        .expect("making the mounts private");
        mount_bind(&hosts_file.path, "/etc/hosts").expect("mounting the test's /etc/hosts");
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "203.0.113.1/32", "dev", "lo"],
            &["addr", "add", "203.0.113.2/32", "dev", "lo"],
        ] {
            let out = Command::new("ip")
                .args(args)
                .output()
                .expect("running ip (iproute2 is required)");
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        f(&hosts_file)
    })
    .join();
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A server on `ip` answering each of up to 32 requests with
/// `answer(its own address, the request's head)`, then closing the
/// connection; returns its address and how many requests it got.
pub fn serve(
    ip: &str,
    answer: impl Fn(SocketAddr, &str) -> String + Send + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((ip, 0)).expect("binding a test server");
    let addr = listener.local_addr().expect("its address");
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    thread::spawn(move || {
        for conn in listener.incoming().take(32) {
            let Ok(mut conn) = conn else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let text = String::from_utf8_lossy(&request).into_owned();
            let _ = conn.write_all(answer(addr, &text).as_bytes());
        }
    });
    (addr, hits)
}

/// An HTTP answer redirecting to `to` (302).
pub fn redirect(to: &str) -> String {
    format!(
        "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

/// An HTTP 200 answer carrying `body`.
pub fn ok(body: &[u8]) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(body)
    )
}
