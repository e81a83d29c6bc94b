//! `cairn server` under a hostile client, as a user runs it: the real
//! binary on loopback, clients speaking raw TCP from other loopback
//! addresses (127.0.0.2…), every loop bounded in count and time.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::Server;

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{bind, connect, socket, AddressFamily, SocketType};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddr::new(from.parse().unwrap(), 0))?;
    connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// The status line and body of a one-shot request from 127.0.0.1.
fn get(to: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// Whether the server has closed `s` (EOF or reset), without waiting.
fn closed(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 64];
    let mut reader = s;
    match reader.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Raises this process's open-file limit to the hard limit.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: l.maximum,
        maximum: l.maximum,
    };
    setrlimit(Resource::Nofile, raised).unwrap();
    assert!(
        l.maximum.unwrap_or(u64::MAX) >= 4096,
        "open-file limit too low"
    );
}

fn refused_counter(to: SocketAddr) -> u64 {
    let (status, body) = get(to, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    body.lines()
        .find_map(|l| l.strip_prefix("cairn_connections_refused_total "))
        .expect("the counter is exported")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn healthz_answers_while_one_client_holds_thousands_of_idle_connections() {
    raise_fd_limit();
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("store"),
        &[
            "--max-connections-per-client",
            "64",
            "--header-timeout",
            "3s",
            "--anonymous-read",
        ],
    );
    let to = server.addr();
    // 3,000 connections from one address that never send a byte.
    let hostile: Vec<TcpStream> = (0..3000)
        .map(|_| connect_from("127.0.0.2", to).unwrap())
        .collect();
    let (status, body) = get(to, "/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    // All but the client's 64 were closed at once, and counted (those the
    // kernel dropped from a full accept queue never reach the counter).
    std::thread::sleep(Duration::from_millis(500));
    let open = hostile.iter().filter(|s| !closed(s)).count();
    assert!(open <= 64, "{open} connections still open");
    let refused = refused_counter(to);
    assert!(refused >= 2000, "refused {refused}");
    // The 64 it kept never sent a request head: gone after the header timeout.
    std::thread::sleep(Duration::from_secs(3));
    let open = hostile.iter().filter(|s| !closed(s)).count();
    assert_eq!(open, 0, "idle connections outlived the header timeout");
    let (status, _) = get(to, "/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[test]
fn the_total_is_capped_too() {
    raise_fd_limit();
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("store"),
        &["--max-connections", "100", "--header-timeout", "30s"],
    );
    let to = server.addr();
    let conns: Vec<TcpStream> = (0..4)
        .flat_map(|i| (0..60).map(move |_| i))
        .map(|i| connect_from(&format!("127.0.0.{}", 10 + i), to).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let open = conns.iter().filter(|s| !closed(s)).count();
    assert!((90..=100).contains(&open), "{open} connections open of 240");
    drop(conns);
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = get(to, "/healthz");
    assert_eq!(
        status, "HTTP/1.1 200 OK",
        "closed connections are forgotten"
    );
}

#[test]
fn slow_and_silent_clients_are_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("store"),
        &["--header-timeout", "2s", "--idle-timeout", "2s"],
    );
    let to = server.addr();
    // Slowloris: a header byte every 200 ms, never finishing the head.
    let mut slow = connect_from("127.0.0.3", to).unwrap();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let started = Instant::now();
    let mut sent = 0;
    for b in head {
        if slow.write_all(&[*b]).is_err() || closed(&slow) {
            break;
        }
        slow.set_nonblocking(false).unwrap();
        sent += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        sent < head.len(),
        "the server waited for the whole slow head"
    );
    let cut = started.elapsed();
    assert!(
        cut >= Duration::from_secs(2),
        "cut before the timeout: {cut:?}"
    );
    let (status, _) = get(to, "/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK", "a well-behaved client is served");

    // An authorised upload that stops halfway: the request ends without
    // storing anything.
    let token = support::cli::token(&tmp.path().join("store"), "uploader", &["write"]);
    let mut upload = connect_from("127.0.0.4", to).unwrap();
    upload
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        upload,
        "PUT /cas/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 1000\r\n\r\nonly ten.",
        "0".repeat(64)
    )
    .unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = upload.read_to_string(&mut answer);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("upload interrupted; nothing stored"),
        "{answer}"
    );
    let (status, _) = get(to, "/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[test]
fn a_large_unauthenticated_upload_is_refused_before_its_body() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start::<&str>(&tmp.path().join("store"), &[]);
    let to = server.addr();
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Claims 1 GiB and sends none of it.
    write!(
        s,
        "PUT /cas/{} HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n",
        "0".repeat(64)
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
}
