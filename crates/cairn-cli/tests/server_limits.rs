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
        // Pauses alone here: the minimum rate has a test of its own.
        &[
            "--header-timeout",
            "2s",
            "--idle-timeout",
            "2s",
            "--min-transfer-rate",
            "0",
        ],
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
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("the upload paused longer than 2s; nothing stored"),
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

/// The sockets process `pid` has open.
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[test]
fn an_upload_trickled_below_the_minimum_rate_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = Server::start(
        &store,
        &["--idle-timeout", "2s", "--min-transfer-rate", "1000"],
    );
    let to = server.addr();
    let token = support::cli::token(&store, "uploader", &["write"]);
    let mut upload = connect_from("127.0.0.5", to).unwrap();
    write!(
        upload,
        "PUT /cas/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 100000\r\n\r\n",
        "0".repeat(64)
    )
    .unwrap();
    // A byte every 250 ms: never a pause of 2 s, far below 1,000 bytes/s.
    let started = Instant::now();
    let mut answer = String::new();
    while started.elapsed() < Duration::from_secs(20) {
        if upload.write_all(b"x").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        upload.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        let read = std::io::Read::read(&mut upload, &mut buf);
        upload.set_nonblocking(false).unwrap();
        match read {
            Ok(n) if n > 0 => {
                answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                break;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            _ => break,
        }
    }
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "still trickling after {:?}: {answer:?}",
        started.elapsed()
    );
    assert!(
        answer.contains("the upload was slower than 1000 bytes/s over 2s"),
        "{answer}"
    );
    assert!(answer.contains("nothing stored"), "{answer}");
    let tmp_files = std::fs::read_dir(store.join("tmp")).unwrap().count();
    assert_eq!(tmp_files, 0, "the upload's temporary file is removed");
    let (status, _) = get(to, "/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[test]
fn a_download_read_a_trickle_at_a_time_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = Server::start(
        &store,
        &[
            "--idle-timeout",
            "2s",
            "--min-transfer-rate",
            "1000000",
            "--anonymous-read",
        ],
    );
    let to = server.addr();
    let token = support::cli::token(&store, "uploader", &["write"]);
    // 32 MiB that do not compress.
    let blob: Vec<u8> = (0..32u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let hex = cairn_digest::Digest::of(&blob).hex();
    let mut s = TcpStream::connect(to).unwrap();
    write!(
        s,
        "PUT /cas/{hex} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n",
        blob.len()
    )
    .unwrap();
    s.write_all(&blob).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(s);
    let pid = server.child.id();
    let before = sockets_of(pid);
    // Reads 16 KiB every 250 ms (64 KB/s), never stopping 2 s: below the
    // 1 MB/s the server was told to expect of a client holding it up.
    let mut slow = TcpStream::connect(to).unwrap();
    write!(slow, "GET /cas/{hex} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 16 << 10];
    let mut taken = 0;
    let mut let_go = false;
    while started.elapsed() < Duration::from_secs(20) {
        match slow.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => taken += n,
        }
        // The server's end is closed even while its last bytes still
        // wait in the kernel's buffers for this reader.
        if started.elapsed() > Duration::from_secs(1) && sockets_of(pid) <= before {
            let_go = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        let_go,
        "the server still serves a trickling reader after {:?} ({taken} bytes taken)",
        started.elapsed()
    );
    assert!(
        taken < blob.len(),
        "a trickling reader got all {taken} bytes"
    );
    let (status, _) = get(to, "/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK");
}
