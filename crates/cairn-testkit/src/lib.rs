//! What the tests of several crates share, and nothing else: hostile HTTP
//! servers on loopback, for the crates whose clients must survive them
//! (`cairn-store`'s `http://` backend, `cairn-fetch`).
//!
//! A server here accepts one connection, reads the request's head and
//! answers as its [`Answer`] says: a plain answer, a head and then more
//! bytes than any client should take, or silence. It counts the body bytes
//! the client took, so a test can assert the client stopped reading.
//!
//! [`network`] gives a test a network of its own, where public-looking
//! addresses and names that resolve anywhere are tried for real.
//!
//! Only a `[dev-dependencies]` entry, never a dependency of shipped code;
//! it depends on no cairn crate (only the standard library and `rustix`),
//! so any crate's tests can use it without a cycle.

pub mod network;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// The byte a [`Body::Filler`] body is made of.
pub const FILLER: u8 = b'v';

/// What a server sends after reading a request's head, and what it does
/// then.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status line and headers, sent as they are (`None`: nothing, not
    /// even a status line).
    pub head: Option<String>,
    /// What follows the head.
    pub body: Body,
    /// What the server does once it has sent both.
    pub then: Then,
}

/// The bytes that follow an answer's head.
#[derive(Clone, Debug)]
pub enum Body {
    /// These bytes.
    Bytes(Vec<u8>),
    /// At least this many [`FILLER`] bytes, in 64 KiB writes, as fast as
    /// the client takes them (the server gives up when the client hangs up).
    Filler(u64),
}

/// What a server does once its answer is sent.
#[derive(Clone, Copy, Debug)]
pub enum Then {
    /// Closes the connection.
    Close,
    /// Holds the connection open, silent, until the client hangs up.
    WaitForHangUp,
    /// Holds the connection open, silent, this long, then closes it.
    Silence(Duration),
}

impl Answer {
    /// A complete answer: `status` (such as `200 OK`), a `Content-Length`
    /// that is `body`'s, `Connection: close`, then `body`.
    pub fn complete(status: &str, body: &[u8]) -> Self {
        Self {
            head: Some(format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )),
            body: Body::Bytes(body.to_vec()),
            then: Then::Close,
        }
    }

    /// `head` (sent as it is), then `bytes` [`FILLER`] bytes, then `then`.
    pub fn filler(head: Option<&str>, bytes: u64, then: Then) -> Self {
        Self {
            head: head.map(str::to_owned),
            body: Body::Filler(bytes),
            then,
        }
    }
}

/// A server answering one connection on loopback.
#[derive(Debug)]
pub struct Served {
    /// `http://127.0.0.1:PORT`, without a path.
    pub url: String,
    sent: Arc<AtomicU64>,
}

impl Served {
    /// How many body bytes the client has taken so far (written to the
    /// socket: the kernel's buffers hold some of them).
    pub fn body_bytes_taken(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

/// Starts a server on a free loopback port that accepts one connection,
/// reads the request's head and then gives `answer`. The server runs on
/// a thread of its own; a client that hangs up ends it early.
pub fn serve_one(answer: Answer) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("a bound listener's address")
    );
    let sent = Arc::new(AtomicU64::new(0));
    let count = sent.clone();
    thread::spawn(move || {
        if let Ok((conn, _)) = listener.accept() {
            answer_on(conn, &answer, &count);
        }
    });
    Served { url, sent }
}

/// Reads a request's head from `conn`, then answers it with `answer`,
/// adding the body bytes written to `count`.
fn answer_on(mut conn: TcpStream, answer: &Answer, count: &AtomicU64) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.ends_with(b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    if let Some(head) = &answer.head {
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
    match &answer.body {
        Body::Bytes(bytes) => {
            if conn.write_all(bytes).is_err() {
                return;
            }
            count.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        }
        Body::Filler(bytes) => {
            let chunk = [FILLER; 64 * 1024];
            while count.load(Ordering::SeqCst) < *bytes {
                if conn.write_all(&chunk).is_err() {
                    return;
                }
                count.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    }
    match answer.then {
        Then::Close => {}
        Then::WaitForHangUp => {
            // Reads until the client hangs up (or sends more, which ends
            // the wait as well: a client of these servers sends one request).
            let _ = conn.read(&mut buf);
        }
        Then::Silence(how_long) => thread::sleep(how_long),
    }
}
