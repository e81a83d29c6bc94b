//! `cairn server` against what a hostile client does once its connection
//! is in: made-up methods, downloads it never reads. The real binary on
//! loopback, raw HTTP, every loop bounded in count and time.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::Server;

/// The status line and body of one request sent as `head` (without the
/// blank line) and `body`.
fn request(to: SocketAddr, head: &str, body: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{head}\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

#[test]
fn made_up_methods_cannot_grow_the_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("store"), &["--anonymous-read"]);
    let to = server.addr();
    // HTTP lets a request name any method token; no token needed to send one.
    for i in 0..300 {
        let (status, _) = request(to, &format!("XMETHOD{i} /healthz HTTP/1.1"), b"");
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed", "XMETHOD{i}");
    }
    let (status, metrics) = request(to, "GET /metrics HTTP/1.1", b"");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        !metrics.contains("XMETHOD"),
        "a client-chosen method became a label"
    );
    let others: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("cairn_http_requests_total{") && l.contains("method=\"other\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(others, 300, "{metrics}");
}

/// The resident memory of process `pid`, in bytes.
fn resident(pid: u32) -> u64 {
    memory(pid, "VmRSS:")
}

/// The most memory process `pid` has held resident, in bytes.
fn peak(pid: u32) -> u64 {
    memory(pid, "VmHWM:")
}

/// A `/proc/PID/status` memory line, in bytes.
fn memory(pid: u32, line: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a memory line");
    kib * 1024
}

#[test]
fn downloads_nobody_reads_are_let_go_without_buffering_them() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = Server::start(&store, &["--idle-timeout", "2s", "--anonymous-read"]);
    let to = server.addr();
    let token = support::cli::token(&store, "uploader", &["write"]);
    // 32 MiB that do not compress, uploaded as Bazel would.
    let blob: Vec<u8> = (0..32u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let hex = cairn_digest::Digest::of(&blob).hex();
    let (status, body) = request(
        to,
        &format!("PUT /cas/{hex} HTTP/1.1\r\nAuthorization: Bearer {token}"),
        &blob,
    );
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let before = resident(server.child.id());
    // Eight clients ask for it and never read a byte of the answer.
    let stalled: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(to).unwrap();
            write!(s, "GET /cas/{hex} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    let grown = resident(server.child.id()).saturating_sub(before);
    assert!(grown < 64 << 20, "the server grew by {grown} bytes");
    let (status, _) = request(to, "GET /healthz HTTP/1.1", b"");
    assert_eq!(status, "HTTP/1.1 200 OK");
    // Each was cut off: what is left to read ends well before the blob does.
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut taken = 0usize;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => taken += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("still open after {taken} bytes")
                }
                Err(_) => break, // reset: closed
            }
        }
        assert!(taken < blob.len(), "a stalled client got all {taken} bytes");
    }
}

#[test]
fn an_upload_larger_than_the_free_space_is_refused_before_its_body() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = Server::start(&store, &["--idle-timeout", "3s", "--anonymous-read"]);
    let to = server.addr();
    let token = support::cli::token(&store, "uploader", &["write"]);
    let kept = b"a blob stored before";
    let kept_hex = cairn_digest::Digest::of(kept).hex();
    let (status, _) = request(
        to,
        &format!("PUT /cas/{kept_hex} HTTP/1.1\r\nAuthorization: Bearer {token}"),
        kept,
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    // A petabyte, declared and never sent: both upload routes.
    let petabyte = 1u64 << 50;
    let hex = "ab".repeat(32);
    for path in [format!("/cas/{hex}"), format!("/v1/blobs/{hex}/{petabyte}")] {
        let mut s = TcpStream::connect(to).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Expect: 100-continue\r\nContent-Length: {petabyte}\r\n\r\n"
        )
        .unwrap();
        let mut buf = [0u8; 2048];
        let n = s.read(&mut buf).unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 507"), "{path}: {answer}");
        assert!(
            answer.contains(&format!("an upload of {petabyte} bytes does not fit")),
            "{answer}"
        );
        assert!(answer.contains("nothing stored"), "{answer}");
    }
    let tmp_files = std::fs::read_dir(store.join("tmp")).unwrap().count();
    assert_eq!(tmp_files, 0, "nothing was started");
    let (status, body) = request(to, &format!("GET /cas/{kept_hex} HTTP/1.1"), b"");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body.as_bytes(), kept, "what was stored before is kept");
}

/// Runs `f` on a thread of its own in a private mount namespace where
/// `dir` is a fresh tmpfs of `size` (as `mount -o size=`): processes `f`
/// starts see it, nothing else does, and it is gone with the thread.
fn on_a_small_tmpfs<T: Send + 'static>(
    dir: &std::path::Path,
    size: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    use rustix::mount::{mount, mount_change, MountFlags, MountPropagationFlags};
    let dir = dir.to_path_buf();
    let options = std::ffi::CString::new(format!("size={size},mode=0700")).unwrap();
    std::thread::spawn(move || {
        // SAFETY: a mount namespace (and, with it, a file-system context)
        // of this thread's own; nothing here depends on sharing either.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
            .expect("a mount namespace of its own (tests run as root)");
        mount_change(
            "/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )
        .unwrap();
        mount(
            "tmpfs",
            &dir,
            "tmpfs",
            MountFlags::empty(),
            options.as_c_str(),
        )
        .expect("mounting a tmpfs");
        f()
    })
    .join()
    .unwrap()
}

/// The answer to an upload's head sent with `Expect: 100-continue` and no
/// body: "HTTP/1.1 100 Continue" if the server wants the body.
fn declare_upload(to: SocketAddr, path: &str, token: &str, size: u64) -> (TcpStream, String) {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Expect: 100-continue\r\nContent-Length: {size}\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 2048];
    let n = s.read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    (s, answer)
}

#[test]
fn uploads_in_flight_reserve_their_size_until_they_end() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    on_a_small_tmpfs(&mount.clone(), "300m", move || {
        let store = mount.join("store");
        let server = Server::start(&store, &["--idle-timeout", "5s", "--anonymous-read"]);
        let to = server.addr();
        let token = support::cli::token(&store, "uploader", &["write"]);
        // 300 MiB, 256 MiB kept in reserve: room for one 30 MiB upload.
        let size = 30u64 << 20;
        let hex = "ab".repeat(32);
        let (first, answer) = declare_upload(to, &format!("/cas/{hex}"), &token, size);
        assert!(answer.starts_with("HTTP/1.1 100"), "{answer}");
        // The first has sent nothing yet; the second would overfill the disk.
        for path in [format!("/cas/{hex}"), format!("/v1/blobs/{hex}/{size}")] {
            let (_, answer) = declare_upload(to, &path, &token, size);
            assert!(answer.starts_with("HTTP/1.1 507"), "{path}: {answer}");
            assert!(
                answer.contains("reserved by uploads in progress"),
                "{answer}"
            );
            assert!(answer.contains("nothing stored"), "{answer}");
        }
        // The first client goes away: its reservation and file go with it,
        // and a real upload of the same size is taken whole.
        drop(first);
        let blob: Vec<u8> = (0..size as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let hex = cairn_digest::Digest::of(&blob).hex();
        let auth = format!("PUT /cas/{hex} HTTP/1.1\r\nAuthorization: Bearer {token}");
        let started = std::time::Instant::now();
        loop {
            let (status, body) = request(to, &auth, &blob);
            if status == "HTTP/1.1 200 OK" {
                break;
            }
            assert!(status.starts_with("HTTP/1.1 507"), "{status} {body}");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the reservation of a client that went away was kept: {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let (status, _) = request(to, &format!("HEAD /cas/{hex} HTTP/1.1"), b"");
        assert_eq!(status, "HTTP/1.1 200 OK", "the upload was stored");
        let tmp_files = std::fs::read_dir(store.join("tmp")).unwrap().count();
        assert_eq!(tmp_files, 0, "the broken-off upload's file is removed");
    });
}

#[test]
fn queries_held_in_memory_share_one_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("store"),
        &["--anonymous-read", "--idle-timeout", "20s"],
    );
    let to = server.addr();
    let before = resident(server.child.id());
    // A missing-blobs query of nearly 16 MiB, its route's limit.
    let one = format!(r#"{{"hash":"sha256:{}","size":1}}"#, "ab".repeat(32));
    let count = (16 << 20) / (one.len() + 1) - 16;
    let body = format!(r#"{{"digests":[{}]}}"#, vec![one; count].join(","));
    // 48 anonymous clients send all of it but the last byte, and wait.
    let mut refused = 0;
    let mut held = Vec::new();
    for _ in 0..48 {
        let mut s = TcpStream::connect(to).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(
            s,
            "POST /v1/blobs/missing HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        let sent = s.write_all(&body.as_bytes()[..body.len() - 1]);
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = s.read(&mut buf) {
            answer.extend_from_slice(&buf[..n]);
        }
        let answer = String::from_utf8_lossy(&answer).into_owned();
        if answer.starts_with("HTTP/1.1 503") {
            assert!(answer.contains("retry later"), "{answer}");
            refused += 1;
        } else {
            assert!(sent.is_ok() && answer.is_empty(), "{answer}");
            held.push(s);
        }
    }
    let grown = resident(server.child.id()).saturating_sub(before);
    assert!(refused >= 48 - 16, "only {refused} of 48 refused");
    assert!(grown < 600 << 20, "the server grew by {grown} bytes");
    let (status, _) = request(to, "GET /healthz HTTP/1.1", b"");
    assert_eq!(status, "HTTP/1.1 200 OK");
    // Once they are gone, a query is answered again.
    drop(held);
    let query = format!(
        r#"{{"digests":[{}]}}"#,
        format_args!(r#"{{"hash":"sha256:{}","size":1}}"#, "cd".repeat(32))
    );
    let started = std::time::Instant::now();
    loop {
        let (status, answer) = request(to, "POST /v1/blobs/missing HTTP/1.1", query.as_bytes());
        if status == "HTTP/1.1 200 OK" {
            assert!(answer.contains(&"cd".repeat(32)), "{answer}");
            break;
        }
        assert!(status.starts_with("HTTP/1.1 503"), "{status}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the budget was not given back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A blob asked for under a size other than its own is not there: 404
/// with a body naming the digest asked for, as HEAD answers 404, for a
/// small blob (read whole) and a large one (streamed); the connection was
/// cut without a status line before.
#[test]
fn a_blob_asked_for_under_another_size_is_404_like_head() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = Server::start(&store, &["--anonymous-read"]);
    let to = server.addr();
    let token = support::cli::token(&store, "uploader", &["write"]);
    for size in [20usize, 100 << 10] {
        let blob: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let hex = cairn_digest::Digest::of(&blob).hex();
        let put = format!("PUT /v1/blobs/{hex}/{size} HTTP/1.1\r\nAuthorization: Bearer {token}");
        assert_eq!(request(to, &put, &blob).0, "HTTP/1.1 200 OK");
        let (status, body) = request(to, &format!("GET /v1/blobs/{hex}/{size} HTTP/1.1"), b"");
        assert_eq!((status.as_str(), body.len()), ("HTTP/1.1 200 OK", size));
        for wrong in [size - 1, size + 1, 10] {
            let path = format!("/v1/blobs/{hex}/{wrong}");
            let (status, _) = request(to, &format!("HEAD {path} HTTP/1.1"), b"");
            assert_eq!(status, "HTTP/1.1 404 Not Found", "HEAD {path}");
            let (status, body) = request(to, &format!("GET {path} HTTP/1.1"), b"");
            assert_eq!(status, "HTTP/1.1 404 Not Found", "GET {path}: {body}");
            assert!(
                body.contains(&format!(
                    "blob sha256:{hex}/{wrong} is not in the store (no blob of that hash and size)"
                )),
                "GET {path}: {body}"
            );
        }
    }
}

#[test]
fn a_large_blob_asked_for_under_a_small_size_is_not_read_into_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = Server::start(&store, &["--anonymous-read"]);
    let to = server.addr();
    let token = support::cli::token(&store, "uploader", &["write"]);
    let blob: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let hex = cairn_digest::Digest::of(&blob).hex();
    let put = format!("PUT /cas/{hex} HTTP/1.1\r\nAuthorization: Bearer {token}");
    assert_eq!(request(to, &put, &blob).0, "HTTP/1.1 200 OK");
    drop(blob);
    // The upload itself peaks the memory no higher than this.
    let before = peak(server.child.id());
    // Anonymous readers name its hash with a size of 10 bytes, 16 at once:
    // a small blob's path, which read the whole file before verifying it.
    let readers: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(to).unwrap();
            write!(s, "GET /v1/blobs/{hex}/10 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            s
        })
        .collect();
    for mut s in readers {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        // Never the blob: a stored blob of another size is not this one.
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    }
    let grown = peak(server.child.id()).saturating_sub(before);
    assert!(grown < 128 << 20, "the server's peak grew by {grown} bytes");
    let (status, _) = request(to, "GET /healthz HTTP/1.1", b"");
    assert_eq!(status, "HTTP/1.1 200 OK");
}
