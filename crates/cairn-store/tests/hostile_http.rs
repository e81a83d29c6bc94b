//! The `http://` backend against a hostile server on loopback: answers
//! that never end, or claim more than any answer may hold, are refused
//! with an error naming what was read, and the client stops reading.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use cairn_digest::Digest;
use cairn_store::http::HttpStore;
use cairn_store::{BlobStoreExt, ErrorKind, RefName, RefStore};

/// What the hostile server sends after reading a request's head.
#[derive(Clone, Copy)]
enum Answer {
    /// `head`, then `body` bytes until the client stops taking them.
    Endless { head: &'static str, body: u64 },
    /// `head` alone, then silence until the client hangs up.
    HeadOnly(&'static str),
}

/// Serves one connection with `answer`; returns the server's URL and the
/// count of body bytes the client took (written to the socket).
fn hostile(answer: Answer) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicU64::new(0));
    let count = written.clone();
    thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let (head, body) = match answer {
            Answer::Endless { head, body } => (head, body),
            Answer::HeadOnly(head) => (head, 0),
        };
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
        let chunk = [b'v'; 64 * 1024];
        while count.load(Ordering::SeqCst) < body {
            if conn.write_all(&chunk).is_err() {
                return;
            }
            count.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        let _ = conn.read(&mut buf); // until the client hangs up
    });
    (url, written)
}

/// Far more than a ref may hold, and more than loopback buffers absorb.
const ENDLESS: u64 = 256 << 20;

#[tokio::test]
async fn a_ref_answer_without_end_is_refused_naming_the_ref() {
    let head = "HTTP/1.1 200 OK\r\nETag: \"1\"\r\nConnection: close\r\n\r\n";
    let (url, written) = hostile(Answer::Endless {
        head,
        body: ENDLESS,
    });
    let store = HttpStore::new(&url, None, &[]).unwrap();
    let name = RefName::new("channels/web/prod").unwrap();
    let err = store.get(&name).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let text = err.to_string();
    assert!(text.contains("reading ref channels/web/prod"), "{text}");
    assert!(text.contains("more than 1048576 bytes"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
    let taken = written.load(Ordering::SeqCst);
    assert!(taken < 64 << 20, "the client read {taken} bytes of it");
}

#[tokio::test]
async fn a_ref_answer_claiming_gigabytes_is_refused_before_its_body() {
    let head = "HTTP/1.1 200 OK\r\nETag: \"1\"\r\nContent-Length: 10737418240\r\n\r\n";
    let (url, _) = hostile(Answer::HeadOnly(head));
    let store = HttpStore::new(&url, None, &[]).unwrap();
    let name = RefName::new("releases/web/1.0").unwrap();
    // Nothing follows the head: only the declared length can refuse it
    // (without that check the read waits out the 60 s read timeout).
    let err = tokio::time::timeout(std::time::Duration::from_secs(20), store.get(&name))
        .await
        .expect("refused without waiting for the body")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(
        err.to_string().contains("reading ref releases/web/1.0"),
        "{err}"
    );
    assert!(err.to_string().contains("more than 1048576 bytes"), "{err}");
}

#[tokio::test]
async fn an_error_answer_without_end_is_read_only_for_its_message() {
    let head = "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n";
    let (url, written) = hostile(Answer::Endless {
        head,
        body: ENDLESS,
    });
    let store = HttpStore::new(&url, None, &[]).unwrap();
    let name = RefName::new("channels/web/prod").unwrap();
    let err = store.get(&name).await.unwrap_err();
    assert!(err.to_string().contains("500"), "{err}");
    assert!(
        err.to_string().contains("reading ref channels/web/prod"),
        "{err}"
    );
    let taken = written.load(Ordering::SeqCst);
    assert!(taken < 64 << 20, "the client read {taken} bytes of it");
}

#[tokio::test]
async fn a_blob_answer_longer_than_its_digest_is_refused_naming_it() {
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
    let (url, written) = hostile(Answer::Endless {
        head,
        body: ENDLESS,
    });
    let store = HttpStore::new(&url, None, &[]).unwrap();
    let digest = Digest::of(&[b'v'; 1000]);
    let err = store.get_bytes(&digest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
    let taken = written.load(Ordering::SeqCst);
    assert!(taken < 64 << 20, "the client read {taken} bytes of it");
}
