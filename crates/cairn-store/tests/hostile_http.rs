//! The `http://` backend against a hostile server on loopback: answers
//! that never end, or claim more than any answer may hold, are refused
//! with an error naming what was read, and the client stops reading.

use cairn_digest::Digest;
use cairn_store::http::HttpStore;
use cairn_store::{BlobStoreExt, ErrorKind, RefName, RefStore};
use cairn_testkit::{serve_one, Answer, Then, FILLER};

/// `head`, then `body` bytes until the client stops taking them, then
/// silence until the client hangs up.
fn hostile(head: &str, body: u64) -> cairn_testkit::Served {
    serve_one(Answer::filler(Some(head), body, Then::WaitForHangUp))
}

/// Far more than a ref may hold, and more than loopback buffers absorb.
const ENDLESS: u64 = 256 << 20;

#[tokio::test]
async fn a_ref_answer_without_end_is_refused_naming_the_ref() {
    let head = "HTTP/1.1 200 OK\r\nETag: \"1\"\r\nConnection: close\r\n\r\n";
    let server = hostile(head, ENDLESS);
    let store = HttpStore::new(&server.url, None, &[]).unwrap();
    let name = RefName::new("channels/web/prod").unwrap();
    let err = store.get(&name).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let text = err.to_string();
    assert!(text.contains("reading ref channels/web/prod"), "{text}");
    assert!(text.contains("more than 1048576 bytes"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
    let taken = server.body_bytes_taken();
    assert!(taken < 64 << 20, "the client read {taken} bytes of it");
}

#[tokio::test]
async fn a_ref_answer_claiming_gigabytes_is_refused_before_its_body() {
    let head = "HTTP/1.1 200 OK\r\nETag: \"1\"\r\nContent-Length: 10737418240\r\n\r\n";
    let server = hostile(head, 0);
    let store = HttpStore::new(&server.url, None, &[]).unwrap();
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
    let server = hostile(head, ENDLESS);
    let store = HttpStore::new(&server.url, None, &[]).unwrap();
    let name = RefName::new("channels/web/prod").unwrap();
    let err = store.get(&name).await.unwrap_err();
    assert!(err.to_string().contains("500"), "{err}");
    assert!(
        err.to_string().contains("reading ref channels/web/prod"),
        "{err}"
    );
    let taken = server.body_bytes_taken();
    assert!(taken < 64 << 20, "the client read {taken} bytes of it");
}

#[tokio::test]
async fn a_blob_answer_longer_than_its_digest_is_refused_naming_it() {
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
    let server = hostile(head, ENDLESS);
    let store = HttpStore::new(&server.url, None, &[]).unwrap();
    let digest = Digest::of(&[FILLER; 1000]);
    let err = store.get_bytes(&digest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
    let taken = server.body_bytes_taken();
    assert!(taken < 64 << 20, "the client read {taken} bytes of it");
}

/// A store server that redirects (a cairn server never does) is not
/// followed: the bearer token and the request go nowhere else, and the
/// read fails naming the status.
#[tokio::test]
async fn a_redirect_is_not_followed_with_the_token() {
    let (elsewhere, asked) = cairn_testkit::network::serve("127.0.0.1", |_, _| {
        cairn_testkit::network::ok(b"v1\nstolen")
    });
    let head = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{elsewhere}/v1/refs/a\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let server = serve_one(Answer::filler(Some(&head), 0, Then::Close));
    let store = HttpStore::new(&server.url, Some("token".into()), &[]).unwrap();
    let err = store.get(&RefName::new("a").unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(err.to_string().contains("307"), "{err}");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);
}
