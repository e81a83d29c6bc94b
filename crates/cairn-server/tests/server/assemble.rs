//! `POST /v1/assemble/…`: a large file copied to a server travels as its
//! new chunks only, and a chunk list that does not make its file is
//! refused with nothing stored.

use cairn_digest::Digest;
use cairn_server::{Scope, ServerConfig};
use cairn_store::http::HttpStore;
use cairn_store::{Assembled, BlobStoreExt, Store};
use cairn_transfer::chunks::{chunk_ref, stored_list};
use cairn_transfer::{copy_closure, CopyOptions, CopyReport, Kind};

use crate::harness::{http, TestServer};

const MIB: usize = 1 << 20;
const CHUNK_A: &[u8] = b"the first chunk, ";
const CHUNK_B: &[u8] = b"and the second";

/// Pseudo-random bytes (xorshift), the same on every run: incompressible
/// and without repeats, so chunk boundaries are those of real data.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// 20 MiB, and the same with the middle MiB replaced.
fn two_versions() -> (Vec<u8>, Vec<u8>) {
    let v1 = noise(20 * MIB, 11);
    let mut v2 = v1.clone();
    let middle = 10 * MIB;
    v2[middle..middle + MIB].copy_from_slice(&noise(MIB, 12));
    (v1, v2)
}

async fn copy_blob(from: &Store, to: &Store, blob: Digest) -> CopyReport {
    copy_closure(from, to, blob, Kind::Leaf, &CopyOptions::default(), &())
        .await
        .unwrap()
}

/// The server's count of request body bytes received.
async fn request_bytes(url: &str, token: &str) -> u64 {
    let text = http()
        .get(format!("{url}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("cairn_http_request_bytes_total "))
        .expect("request byte counter in /metrics")
        .parse()
        .unwrap()
}

/// Copies both versions to a server with `token`; returns the second copy's
/// report and the request body bytes the server received for it.
async fn copy_both(url: &str, token: &str, reader: &str) -> (CopyReport, u64, Vec<u8>) {
    let (v1, v2) = two_versions();
    let from = Store::memory();
    let d1 = from.blobs.put_bytes(v1).await.unwrap();
    let d2 = from.blobs.put_bytes(v2.clone()).await.unwrap();
    let to = HttpStore::new(url, Some(token.into()), &[])
        .unwrap()
        .into_store();
    let first = copy_blob(&from, &to, d1).await;
    assert_eq!(first.files_chunked, 1, "{first:?}");
    let before = request_bytes(url, reader).await;
    let second = copy_blob(&from, &to, d2).await;
    let moved = request_bytes(url, reader).await - before;
    eprintln!(
        "1 MiB changed in 20 MiB: report {} bytes, server received {moved} request bytes: {second:?}",
        second.bytes_copied
    );
    (second, moved, v2)
}

#[tokio::test]
async fn a_changed_large_file_moves_only_its_new_chunks_to_a_server() {
    let server = TestServer::start().await;
    // Reading (what is missing) and writing (blobs, the chunk list ref,
    // assembly) is enough: no admin needed.
    let copier = server.token("copier", &["read", "write"]);
    let (second, moved, v2) = copy_both(&server.url, &copier, &server.read).await;
    let budget = 3 * MIB as u64;
    assert!(second.bytes_copied <= budget, "{second:?}");
    assert!(moved <= budget, "server received {moved} bytes");
    assert!(second.chunks_reused > 0, "{second:?}");

    let file = Digest::of(&v2);
    assert!(server.fs.has_sync(&file), "file assembled on the server");
    assert_eq!(server.fs.read_blob_sync(&file).unwrap().unwrap(), v2);
    let local = Store::local(cairn_store::FsStore::open(&server.root).unwrap());
    let chunks = stored_list(&local, file)
        .await
        .unwrap()
        .expect("chunk list");
    assert_eq!(chunks.iter().map(|c| c.size()).sum::<u64>(), file.size());
    assert!(local.refs.get(&chunk_ref(&file)).await.unwrap().is_some());
    assert_eq!(server.tmp_files(), 0);
}

/// A server over a store that cannot assemble in place (as an S3 backing
/// cannot): it assembles by reading the chunks itself, so the client still
/// uploads only the new chunks.
#[tokio::test]
async fn a_server_whose_store_cannot_assemble_still_spares_the_upload() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    let copier =
        cairn_server::tokens::create(&tokens, "copier", &[Scope::Read, Scope::Write]).unwrap();
    let read = cairn_server::tokens::create(&tokens, "reader", &[Scope::Read]).unwrap();
    let store = Store::memory();
    let behind = store.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = ServerConfig {
        tokens: Some(tokens),
        ..ServerConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cairn_server::serve(listener, store, config, async {
        let _ = stopped.await;
    }));

    let a = behind.blobs.put_bytes(CHUNK_A.to_vec()).await.unwrap();
    assert_eq!(
        behind.blobs.assemble(&a, &[a]).await.unwrap(),
        Assembled::Unsupported,
        "the memory store stands for a backend that cannot assemble"
    );

    let (second, moved, v2) = copy_both(&url, &copier, &read).await;
    assert!(moved <= 3 * MIB as u64, "server received {moved} bytes");
    assert!(second.bytes_copied <= 3 * MIB as u64, "{second:?}");
    assert_eq!(behind.blobs.get_bytes(&Digest::of(&v2)).await.unwrap(), v2);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Raw `POST /v1/assemble/<hex>/<size>` with `body`: status and message.
async fn post(server: &TestServer, token: &str, file: &Digest, body: String) -> (u16, String) {
    let r = http()
        .post(format!(
            "{}/v1/assemble/{}/{}",
            server.url,
            file.hex(),
            file.size()
        ))
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn list(chunks: &[Digest]) -> String {
    serde_json::json!({ "chunks": chunks }).to_string()
}

#[tokio::test]
async fn a_chunk_list_that_does_not_make_its_file_is_refused() {
    let server = TestServer::start().await;
    let client = server.client(&server.write);
    let a = client.blobs.put_bytes(CHUNK_A.to_vec()).await.unwrap();
    let b = client.blobs.put_bytes(CHUNK_B.to_vec()).await.unwrap();
    let whole = Digest::of(&[CHUNK_A, CHUNK_B].concat());
    let w = &server.write;

    // Sizes that do not add up to the file's: refused before any work.
    let (status, text) = post(&server, w, &whole, list(&[a])).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("add up"), "{text}");

    // A chunk the server lacks: 409 naming it.
    let unknown = Digest::of(&CHUNK_B.to_ascii_uppercase());
    let (status, text) = post(&server, w, &whole, list(&[a, unknown])).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains(&unknown.hex()), "{text}");

    // The right sizes, the wrong bytes: the result does not hash to the file.
    let swapped = Digest::of(&[CHUNK_B, CHUNK_A].concat());
    let (status, text) = post(&server, w, &swapped, list(&[a, b])).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("corrupt"), "{text}");

    // Absurd or malformed bodies.
    let many = vec![a; cairn_store::assemble::MAX_CHUNKS + 1];
    let big = Digest::from_hex(&"00".repeat(32), a.size() * many.len() as u64).unwrap();
    let (status, text) = post(&server, w, &big, list(&many)).await;
    assert_eq!(status, 400, "{text}");
    let (status, _) = post(&server, w, &whole, "{\"chunks\": 3}".into()).await;
    assert_eq!(status, 400);

    for file in [whole, swapped, big] {
        assert!(!server.fs.has_sync(&file), "{file} stored");
    }
    assert_eq!(server.tmp_files(), 0);

    // A read token may not assemble; a write token may.
    let (status, _) = post(&server, &server.read, &whole, list(&[a, b])).await;
    assert_eq!(status, 403);
    assert!(!server.fs.has_sync(&whole));
    let (status, text) = post(&server, w, &whole, list(&[a, b])).await;
    assert_eq!(status, 200, "{text}");
    assert!(server.fs.has_sync(&whole));
}

#[tokio::test]
async fn the_http_backend_names_the_chunk_the_server_lacks() {
    let server = TestServer::start().await;
    let client = server.client(&server.token("copier", &["read", "write"]));
    let a = client.blobs.put_bytes(CHUNK_A.to_vec()).await.unwrap();
    let absent = Digest::of(CHUNK_B);
    let file = Digest::of(&[CHUNK_A, CHUNK_B].concat());
    let err = client
        .blobs
        .assemble(&file, &[a, absent])
        .await
        .unwrap_err();
    assert!(
        matches!(err, cairn_store::StoreError::NotFound(d) if d == absent),
        "{err:?}"
    );
}
