//! `cairn server` against what a hostile client sends once its connection
//! is in: odd methods, bodies that lie about what they are. The real
//! binary on loopback, raw HTTP, every loop bounded in count.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::Server;

/// The server's address from its URL.
fn addr(server: &Server) -> SocketAddr {
    server
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("http://ADDR")
}

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
    let to = addr(&server);
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
