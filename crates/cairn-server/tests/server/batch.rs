//! `POST /v1/blobs/batch`: many small blobs in one request, checked whole
//! before anything is stored; and the client's fallback to single PUTs
//! against a server without the route.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_digest::Digest;
use cairn_store::blob::batch::{encode, MAX_BATCH_BLOBS, MAX_BATCH_BODY};
use cairn_store::http::HttpStore;
use cairn_store::{BlobStore, BlobStoreExt};

use crate::harness::{http, TestServer};

fn blobs(texts: &[&str]) -> Vec<(Digest, Vec<u8>)> {
    texts
        .iter()
        .map(|t| (Digest::of(t.as_bytes()), t.as_bytes().to_vec()))
        .collect()
}

fn body(blobs: &[(Digest, Vec<u8>)]) -> Vec<u8> {
    encode(blobs.iter().map(|(d, b)| (d, b.as_slice())))
}

async fn post(server: &TestServer, token: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut rb = http()
        .post(format!("{}/v1/blobs/batch", server.url))
        .body(body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let response = rb.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_batch_is_stored_whole() {
    let server = TestServer::start().await;
    let blobs = blobs(&["one", "two", "", "three"]);
    let (status, text) = post(&server, Some(&server.write), body(&blobs)).await;
    assert_eq!(status, 200, "{text}");
    for (d, _) in &blobs {
        assert!(server.fs.has_sync(d), "{d} not stored");
    }
    assert_eq!(server.tmp_files(), 0);
}

#[tokio::test]
async fn a_corrupt_blob_is_named_and_nothing_of_its_batch_is_stored() {
    let server = TestServer::start().await;
    let mut blobs = blobs(&["good before", "victim", "good after"]);
    let victim = blobs[1].0;
    blobs[1].1 = b"victiM".to_vec();
    let (status, text) = post(&server, Some(&server.write), body(&blobs)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains(&victim.to_string()), "not named: {text}");
    for (d, _) in &blobs {
        assert!(!server.fs.has_sync(d), "{d} stored from a refused batch");
    }
    assert_eq!(server.tmp_files(), 0);
}

#[tokio::test]
async fn truncated_framing_is_400() {
    let server = TestServer::start().await;
    let whole = body(&blobs(&["complete", "cut short"]));
    for cut in [1, 39, 40 + 4, whole.len() - 1] {
        let (status, text) = post(&server, Some(&server.write), whole[..cut].to_vec()).await;
        assert_eq!(status, 400, "cut at {cut}: {text}");
        assert!(text.contains("truncated"), "{text}");
    }
    assert!(!server.fs.has_sync(&Digest::of(b"complete")));
}

#[tokio::test]
async fn oversized_batches_are_413() {
    let server = TestServer::start().await;
    let empty = (Digest::of(b""), Vec::new());
    let too_many = body(&vec![empty; MAX_BATCH_BLOBS + 1]);
    let (status, text) = post(&server, Some(&server.write), too_many).await;
    assert_eq!(status, 413, "{text}");
    let too_long = vec![0u8; MAX_BATCH_BODY + 1];
    let (status, text) = post(&server, Some(&server.write), too_long).await;
    assert_eq!(status, 413, "{text}");
}

#[tokio::test]
async fn a_batch_needs_a_write_token() {
    let server = TestServer::start().await;
    let blobs = blobs(&["guarded"]);
    assert_eq!(post(&server, None, body(&blobs)).await.0, 401);
    assert_eq!(post(&server, Some(&server.read), body(&blobs)).await.0, 403);
    assert!(!server.fs.has_sync(&blobs[0].0));
}

/// An "older server": forwards everything to a real one except the batch
/// route, which it answers 404, counting the requests of each kind.
#[derive(Clone)]
struct OldServer {
    upstream: String,
    batches: Arc<AtomicUsize>,
    puts: Arc<AtomicUsize>,
}

async fn forward(State(old): State<OldServer>, req: Request) -> Response {
    let path = req.uri().path_and_query().unwrap().to_string();
    if path == "/v1/blobs/batch" {
        old.batches.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_FOUND.into_response();
    }
    if req.method() == axum::http::Method::PUT {
        old.puts.fetch_add(1, Ordering::SeqCst);
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut rb = http().request(parts.method, format!("{}{path}", old.upstream));
    for (name, value) in &parts.headers {
        if name != "host" {
            rb = rb.header(name, value);
        }
    }
    let answer = rb.body(bytes).send().await.unwrap();
    let status = answer.status();
    (status, Body::from(answer.bytes().await.unwrap())).into_response()
}

#[tokio::test]
async fn against_a_server_without_the_route_put_many_falls_back_to_single_puts() {
    let server = TestServer::start().await;
    let old = OldServer {
        upstream: server.url.clone(),
        batches: Arc::default(),
        puts: Arc::default(),
    };
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(old.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = HttpStore::new(&url, Some(server.admin.clone()), &[]).unwrap();
    let blobs = blobs(&["old one", "old two", "old three"]);
    client.put_many(blobs.clone()).await.unwrap();
    assert_eq!(old.batches.load(Ordering::SeqCst), 1);
    assert_eq!(old.puts.load(Ordering::SeqCst), 3);
    for (d, bytes) in &blobs {
        assert!(server.fs.has_sync(d));
        assert_eq!(&client.get_bytes(d).await.unwrap(), bytes);
    }
}
