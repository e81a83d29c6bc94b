//! The store contract through the server: the shared conformance suite
//! over HTTP (the server over a directory, and over S3), through the
//! counting wrapper too, racing writers, and Bazel-independent blob round
//! trips.

use std::sync::Arc;

use cairn_server::{Scope, ServerConfig};
use cairn_store::moto::Moto;
use cairn_store::reach::Kind;
use cairn_store::{conformance, RefName, Store, StoreError};
use cairn_transfer::CountingStore;

use crate::harness::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_over_http() {
    let server = TestServer::start().await;
    let store = server.client(&server.admin);
    conformance::all(&store).await;
    let absent = (cairn_digest::Digest::of(b"absent"), Kind::Leaf);
    assert_eq!(
        store.blobs.has_closures(&[absent]).await.unwrap(),
        Some(vec![false]),
        "the server answers closure questions"
    );
}

/// The counting wrapper around the HTTP backend keeps what the backend
/// does better: batches, assembly, closure answers, and the whole suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_through_the_counting_wrapper_over_http() {
    let server = TestServer::start().await;
    let http = server.client(&server.admin);
    let counting = Arc::new(CountingStore::new(http.blobs.clone()));
    let store = Store {
        blobs: counting.clone(),
        refs: http.refs,
        local: None,
    };
    conformance::all(&store).await;
    assert!(counting.puts() > 0);
}

/// A server whose own store is an S3 bucket: what the server does on its
/// clients' behalf (assembling by copy, walking closures in S3) passes the
/// suite as the directory-backed server does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_over_http_over_s3() {
    let moto = Moto::start();
    moto.create_bucket("behind");
    let backend = moto.store("behind", "server").into_store();
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens.toml");
    let token = cairn_server::tokens::create(&tokens, "admin", &[Scope::Admin]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = ServerConfig {
        tokens: Some(tokens),
        ..ServerConfig::default()
    };
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(cairn_server::serve(listener, backend, config, async {
        let _ = stopped.await;
    }));
    let options = cairn_store::OpenOptions {
        token: Some(token),
        create: true,
        ..Default::default()
    };
    let store = cairn_store::connect(&url, &options).await.unwrap();
    conformance::all(&store).await;
    racing_writers_of_a_and_a_slash_b_never_both_get_201(&url, &options.token.unwrap()).await;
}

/// Two clients racing to create `a` and `a/b` through a server over S3,
/// 12 rounds: never both 201; a loser is 400 naming the ref in its way,
/// and the server keeps at most the winner.
async fn racing_writers_of_a_and_a_slash_b_never_both_get_201(url: &str, token: &str) {
    let http = reqwest::Client::new();
    let put = |name: String| {
        http.put(format!("{url}/v1/refs/{name}"))
            .bearer_auth(token)
            .header("If-None-Match", "*")
            .body(format!("value of {name}"))
            .send()
    };
    for round in 0..12 {
        let (upper, lower) = (format!("nest{round}/a"), format!("nest{round}/a/b"));
        let (u, l) = tokio::join!(put(upper.clone()), put(lower.clone()));
        let (u, l) = (u.unwrap(), l.unwrap());
        let statuses = (u.status().as_u16(), l.status().as_u16());
        assert_ne!(statuses, (201, 201), "round {round}: both created");
        for (answer, other) in [(u, &lower), (l, &upper)] {
            let status = answer.status().as_u16();
            let text = answer.text().await.unwrap();
            match status {
                201 => {}
                400 => assert!(text.contains(&format!("ref {other} exists")), "{text}"),
                _ => panic!("round {round}: {status} {text}"),
            }
        }
    }
}

#[tokio::test]
async fn two_writers_racing_one_ref_exactly_one_wins() {
    let server = TestServer::start().await;
    let a = server.client(&server.admin);
    let b = server.client(&server.admin);
    let name = RefName::new("race/one").unwrap();
    let mut version = a
        .refs
        .compare_and_swap(&name, None, b"0".to_vec())
        .await
        .unwrap();
    for round in 0..20 {
        let (ra, rb) = tokio::join!(
            a.refs
                .compare_and_swap(&name, Some(&version), format!("a{round}").into_bytes()),
            b.refs
                .compare_and_swap(&name, Some(&version), format!("b{round}").into_bytes()),
        );
        let (won, lost) = match (ra, rb) {
            (Ok(v), Err(e)) | (Err(e), Ok(v)) => (v, e),
            other => panic!("round {round}: expected exactly one winner, got {other:?}"),
        };
        assert!(matches!(lost, StoreError::Conflict { .. }), "{lost:?}");
        version = won;
    }
}

#[tokio::test]
async fn blobs_uploaded_through_the_server_are_in_the_local_store() {
    let server = TestServer::start().await;
    let store = server.client(&server.admin);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = cairn_store::BlobStoreExt::put_bytes(store.blobs.as_ref(), big.clone())
        .await
        .unwrap();
    assert!(server.fs.has_sync(&digest));
    let back = cairn_store::BlobStoreExt::get_bytes(store.blobs.as_ref(), &digest)
        .await
        .unwrap();
    assert_eq!(back, big);
}

/// `GET /v1/refs` answers a page at a time, and the HTTP backend follows
/// the pages: listing more refs than one page holds still works end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ref_lists_are_paged_and_the_client_follows_the_pages() {
    let server = TestServer::start().await;
    // 2,100 refs, more than two pages of 1,000, written to the store itself.
    let mut names: Vec<RefName> = (0..2100)
        .map(|i| RefName::new(format!("many/r{i:05}")).unwrap())
        .collect();
    for name in &names {
        cairn_store::RefStore::compare_and_swap(server.fs.as_ref(), name, None, b"v".to_vec())
            .await
            .unwrap();
    }
    names.sort();
    let listed = server
        .client(&server.read)
        .refs
        .list("many/")
        .await
        .unwrap();
    assert_eq!(listed, names, "every ref, in order, across pages");

    let c = crate::harness::http();
    let get = |query: &str| {
        let url = format!("{}/v1/refs?{query}", server.url);
        let request = c.get(url).bearer_auth(&server.read).send();
        async move {
            let answer = request.await.unwrap();
            let status = answer.status().as_u16();
            let text = answer.text().await.unwrap();
            let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
            (status, json)
        }
    };
    let (status, page) = get("prefix=many/&limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(
        page["refs"],
        serde_json::json!(["many/r00000", "many/r00001"])
    );
    assert_eq!(page["next"], "many/r00001");
    let (status, page) = get("prefix=many/&limit=2&after=many/r00001").await;
    assert_eq!(status, 200);
    assert_eq!(
        page["refs"],
        serde_json::json!(["many/r00002", "many/r00003"])
    );
    // No limit, or one past the most: a page of 1,000.
    for query in ["prefix=many/", "prefix=many/&limit=1000000"] {
        let (status, page) = get(query).await;
        assert_eq!(status, 200);
        assert_eq!(page["refs"].as_array().unwrap().len(), 1000, "{query}");
        assert_eq!(page["next"], "many/r00999", "{query}");
    }
    // The last page says so by having no next.
    let (status, page) = get("prefix=many/&after=many/r01999").await;
    assert_eq!(status, 200);
    assert_eq!(page["refs"].as_array().unwrap().len(), 100);
    assert!(page.get("next").is_none(), "{page}");
    for (query, needle) in [
        ("prefix=many/&limit=0", "limit must be at least 1"),
        ("prefix=many/&after=../x", "invalid ref name"),
        ("prefix=many/&limit=x", "limit"),
    ] {
        let (status, answer) = get(query).await;
        assert_eq!(status, 400, "{query}");
        assert!(answer.to_string().contains(needle), "{query}: {answer}");
    }
}
