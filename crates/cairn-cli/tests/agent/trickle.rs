//! A hostile store in front of a real `cairn server`: a loopback proxy
//! that forwards requests one per connection, except those it is told to
//! starve (blob reads, a fleet record), which it answers with a header
//! and then one byte every half second (a store that trickles: no read
//! timeout ever fires, and the body never ends), or to pace, which it
//! forwards each after a delay (a store that sends one blob just within
//! every silence the client allows).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Requests starved while `starving` is set: every one whose path starts
/// with `prefix` and names none of `spared` (hex digests).
#[derive(Default)]
struct Rules {
    starving: AtomicBool,
    prefix: Mutex<String>,
    spared: Mutex<Vec<String>>,
    /// Starved requests are forwarded after this delay instead.
    pace: Mutex<Option<Duration>>,
    stop: AtomicBool,
}

/// The proxy; stops (and its trickles end) when dropped.
pub struct Trickle {
    pub addr: SocketAddr,
    rules: Arc<Rules>,
}

impl Trickle {
    /// A proxy on a free loopback port forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let rules = Arc::new(Rules::default());
        let r = rules.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if r.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let r = r.clone();
                std::thread::spawn(move || serve(conn, upstream, &r));
            }
        });
        Self { addr, rules }
    }

    /// Starts starving blob reads, sparing the blobs named by `spared`.
    pub fn starve(&self, spared: &[&str]) {
        self.starve_under("/v1/blobs/", spared);
    }

    /// Starts starving requests for paths under `prefix`, sparing those
    /// that name one of `spared`.
    pub fn starve_under(&self, prefix: &str, spared: &[&str]) {
        *self.rules.prefix.lock().unwrap() = prefix.to_string();
        *self.rules.spared.lock().unwrap() = spared.iter().map(|s| s.to_string()).collect();
        self.rules.starving.store(true, Ordering::Relaxed);
    }

    /// Starts delaying each blob read by `delay` (then forwarding it),
    /// sparing the blobs named by `spared`.
    pub fn pace(&self, delay: Duration, spared: &[&str]) {
        *self.rules.pace.lock().unwrap() = Some(delay);
        self.starve(spared);
    }

    /// Forwards everything again.
    pub fn relent(&self) {
        self.rules.starving.store(false, Ordering::Relaxed);
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.rules.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

fn serve(mut client: TcpStream, upstream: SocketAddr, rules: &Rules) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 << 10 {
            return;
        }
    };
    let (head, rest) = head.split_at(end);
    let text = String::from_utf8_lossy(head).into_owned();
    let path = text.split(' ').nth(1).unwrap_or_default().to_string();
    if starved(&path, rules) {
        let pace = *rules.pace.lock().unwrap();
        match pace {
            Some(delay) => std::thread::sleep(delay),
            None => return trickle(client, rules),
        }
    }
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    // One request per connection: the client opens a new one for the
    // next, which is judged on its own.
    let mut lines: Vec<&str> = text.trim_end().split("\r\n").collect();
    lines.retain(|l| !l.to_ascii_lowercase().starts_with("connection:"));
    let forwarded = format!("{}\r\nConnection: close\r\n\r\n", lines.join("\r\n"));
    if up.write_all(forwarded.as_bytes()).is_err() || up.write_all(rest).is_err() {
        return;
    }
    let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
    });
    let _ = std::io::copy(&mut up, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.shutdown(Shutdown::Both);
}

fn starved(path: &str, rules: &Rules) -> bool {
    rules.starving.load(Ordering::Relaxed)
        && path.starts_with(rules.prefix.lock().unwrap().as_str())
        && !rules
            .spared
            .lock()
            .unwrap()
            .iter()
            .any(|hex| path.contains(hex.as_str()))
}

/// A 200 with a long body, one byte every half second, until the client
/// goes or the proxy stops.
fn trickle(mut client: TcpStream, rules: &Rules) {
    // Headers a ref read also accepts (a version), then a body that
    // never ends.
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nETag: \"7\"\r\nContent-Length: 100000\r\n\r\n";
    if client.write_all(head.as_bytes()).is_err() {
        return;
    }
    while !rules.stop.load(Ordering::Relaxed) {
        if client.write_all(b"x").is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
