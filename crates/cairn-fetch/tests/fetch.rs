//! `fetch` from `file://` and from a tiny HTTP server on loopback; a wrong
//! digest or size leaves nothing behind.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_digest::{Digest, DigestRef};
use cairn_fetch::{fetch, fetch_with, FetchError, FetchLimits};
use cairn_testkit::{serve_one, Answer, Then};

const BLOB: &[u8] = b"vendored bytes, pinned by digest\n";
const OTHER: &[u8] = b"not the bytes you declared\n";

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn file_url(dir: &Path, bytes: &[u8]) -> String {
    let src = dir.join("src.bin");
    std::fs::write(&src, bytes).unwrap();
    format!("file://{}", src.display())
}

#[tokio::test]
async fn file_fetch_ok() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path(), BLOB);
    let dest = dir.path().join("out.bin");
    let got = fetch(&url, Digest::of(BLOB).into(), &dest).await.unwrap();
    assert_eq!(got, Digest::of(BLOB));
    assert_eq!(std::fs::read(&dest).unwrap(), BLOB);
    assert_eq!(entries(dir.path()), ["out.bin", "src.bin"]);
}

#[tokio::test]
async fn bare_hash_without_size_is_enough() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path(), BLOB);
    let bare: DigestRef = Digest::of(BLOB).to_string().parse().unwrap();
    let got = fetch(&url, bare, &dir.path().join("out.bin"))
        .await
        .unwrap();
    assert_eq!(got.size(), BLOB.len() as u64);
}

#[tokio::test]
async fn mismatch_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path(), OTHER);
    let dest = dir.path().join("out.bin");
    let err = fetch(&url, Digest::of(BLOB).into(), &dest)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, FetchError::Mismatch { .. }), "{text}");
    let expected = format!(
        "expected {:#} got {:#}",
        Digest::of(BLOB),
        Digest::of(OTHER)
    );
    assert!(text.contains(&expected) && text.contains(&url), "{text}");
    assert_eq!(entries(dir.path()), ["src.bin"]);
}

#[tokio::test]
async fn longer_than_declared_stops_early() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path(), BLOB);
    let short = DigestRef {
        size: Some(4),
        ..Digest::of(BLOB).into()
    };
    let err = fetch(&url, short, &dir.path().join("out.bin"))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::TooLong { size: 4, .. }), "{err}");
    assert_eq!(entries(dir.path()), ["src.bin"]);
}

#[tokio::test]
async fn missing_file_and_bad_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.bin");
    let err = fetch("file:///nonexistent/cairn", Digest::of(BLOB).into(), &dest)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/cairn"), "{err}");
    let err = fetch("ftp://example.org/x", Digest::of(BLOB).into(), &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::UnsupportedUrl { .. }), "{err}");
    assert!(entries(dir.path()).is_empty());
}

/// Serves one request on loopback with `status` and `body`; returns the URL.
fn serve_once(status: &'static str, body: &'static [u8]) -> String {
    let server = serve_one(Answer::complete(status, body));
    format!("{}/vendor.tar", server.url)
}

#[tokio::test]
async fn http_fetch_ok() {
    let dir = tempfile::tempdir().unwrap();
    let url = serve_once("200 OK", BLOB);
    let dest = dir.path().join("vendor.tar");
    let got = fetch(&url, Digest::of(BLOB).into(), &dest).await.unwrap();
    assert_eq!(got, Digest::of(BLOB));
    assert_eq!(std::fs::read(&dest).unwrap(), BLOB);
}

#[tokio::test]
async fn http_error_status_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = serve_once("404 Not Found", b"no");
    let err = fetch(&url, Digest::of(BLOB).into(), &dir.path().join("v"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Http { .. }) && err.to_string().contains(&url),
        "{err}"
    );
    assert!(entries(dir.path()).is_empty());
}

#[tokio::test]
async fn http_mismatch_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = serve_once("200 OK", OTHER);
    let err = fetch(&url, Digest::of(BLOB).into(), &dir.path().join("v"))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Mismatch { .. }), "{err}");
    assert!(entries(dir.path()).is_empty());
}

/// A hostile server on loopback: reads the request, then sends `head`
/// (if any), then `body_bytes` bytes (as fast as the client takes them),
/// then holds the connection silent for `silence`. Returns the URL.
fn serve_hostile(head: Option<&'static str>, body_bytes: u64, silence: Duration) -> String {
    let server = serve_one(Answer::filler(head, body_bytes, Then::Silence(silence)));
    format!("{}/vendor.tar", server.url)
}

#[tokio::test]
async fn an_endless_body_for_a_digest_without_size_stops_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    // "Endless": 64 MiB, far past the limit, so a fetch without one ends too.
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
    let url = serve_hostile(Some(head), 64 << 20, Duration::ZERO);
    let declared = DigestRef {
        hash: *Digest::of(BLOB).hash(),
        size: None,
    };
    let limits = FetchLimits {
        max_unsized_bytes: 1 << 20,
        ..FetchLimits::default()
    };
    let err = fetch_with(&url, declared, &dir.path().join("v"), &limits)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unbounded { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&url) && text.contains("more than 1048576 bytes"),
        "{text}"
    );
    assert!(text.contains("declares no size"), "{text}");
    assert!(entries(dir.path()).is_empty(), "nothing left behind");
}

#[tokio::test]
async fn a_server_that_stops_sending_fails_the_fetch_in_time() {
    let limits = FetchLimits {
        stall_timeout: Duration::from_secs(1),
        ..FetchLimits::default()
    };
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";
    // Silent before its head; and silent halfway through its body.
    for (head, body) in [(None, 0), (Some(head), 64 << 10)] {
        let dir = tempfile::tempdir().unwrap();
        let url = serve_hostile(head, body, Duration::from_secs(20));
        let started = Instant::now();
        let declared = DigestRef {
            hash: *Digest::of(BLOB).hash(),
            size: Some(1_000_000),
        };
        let err = fetch_with(&url, declared, &dir.path().join("v"), &limits)
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, FetchError::Stalled { .. }), "{err}");
        assert!(err.to_string().contains(&url), "{err}");
        assert!(err.to_string().contains("sent nothing for 1 s"), "{err}");
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert!(entries(dir.path()).is_empty(), "nothing left behind");
    }
}
