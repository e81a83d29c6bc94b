//! Opening a server store with `cairn_store::connect`: the server's health
//! and the token are checked at once, and every refusal says its kind (a
//! bad token is not an outage) and names the server. A store behind the
//! server that cannot be reached is 503, which clients see as
//! `Unavailable`, not as their own fault.

use cairn_digest::Digest;
use cairn_server::{Scope, ServerConfig};
use cairn_store::moto::{free_port, Moto};
use cairn_store::s3::{S3Store, S3Url};
use cairn_store::{BlobStoreExt, ErrorKind, OpenOptions};

use crate::harness::{http, Options, TestServer};

fn with_token(token: Option<&str>) -> OpenOptions {
    OpenOptions {
        token: token.map(str::to_string),
        ..OpenOptions::default()
    }
}

/// Connecting to `url` fails with `kind`; the message names `url`.
async fn refused(url: &str, options: &OpenOptions, kind: ErrorKind) -> String {
    let err = cairn_store::connect(url, options).await.unwrap_err();
    assert_eq!(err.kind(), kind, "{url}: {err}");
    let text = err.to_string();
    assert!(text.contains(url), "the server is not named: {text}");
    text
}

#[tokio::test]
async fn connect_checks_the_server_and_the_token() {
    let server = TestServer::start().await;
    let url = &server.url;
    for token in [&server.read, &server.admin] {
        cairn_store::connect(url, &with_token(Some(token)))
            .await
            .unwrap();
    }

    let err = refused(url, &with_token(None), ErrorKind::Unauthorized).await;
    assert!(err.contains("without a token"), "{err}");
    let err = refused(url, &with_token(Some("wrong")), ErrorKind::Unauthorized).await;
    assert!(
        err.contains("401") && err.contains("unknown token"),
        "{err}"
    );
    let promoter = server.token("ci", &["promote:app"]);
    let err = refused(url, &with_token(Some(&promoter)), ErrorKind::Forbidden).await;
    assert!(err.contains("lacks the scope read"), "{err}");

    let elsewhere = format!("{url}/not-the-api");
    let err = refused(
        &elsewhere,
        &with_token(Some(&server.read)),
        ErrorKind::InvalidRequest,
    )
    .await;
    assert!(err.contains("cairn server"), "{err}");

    let tls = url.replacen("http://", "https://", 1);
    let err = refused(
        &tls,
        &with_token(Some(&server.read)),
        ErrorKind::InvalidRequest,
    )
    .await;
    assert!(err.contains("does not speak TLS"), "{err}");
    assert!(err.contains("use http://"), "{err}");

    let nobody = format!("http://127.0.0.1:{}", free_port());
    let err = refused(&nobody, &with_token(Some("t")), ErrorKind::Unavailable).await;
    assert!(err.contains("cannot connect"), "{err}");
}

/// A server that accepts connections and never answers fails the check
/// within its time limit, as an outage.
#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_in_time() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    // Without the probe's own limit this would wait forever.
    let guard = std::time::Duration::from_secs(120);
    let options = with_token(Some("t"));
    let check = refused(&url, &options, ErrorKind::Unavailable);
    let err = tokio::time::timeout(guard, check)
        .await
        .expect("the check never gave up");
    assert!(err.contains("no answer in time"), "{err}");
    drop(silent);
}

#[tokio::test]
async fn anonymous_reads_need_no_token_to_connect() {
    let server = TestServer::start_with(Options {
        anonymous_read: true,
        ..Options::default()
    })
    .await;
    cairn_store::connect(&server.url, &with_token(None))
        .await
        .unwrap();
}

/// A server over S3 whose S3 is gone answers 503 with a message that
/// leaks nothing of its backend; the client sees `Unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backend_is_503_unavailable() {
    let moto = Moto::start();
    moto.create_bucket("backend");
    let parsed = S3Url::parse(&moto.url("backend", "")).unwrap();
    let quick = object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    };
    let builder = parsed.builder(&moto.credentials()).with_retry(quick);
    let store = S3Store::with_builder(&parsed, builder)
        .unwrap()
        .into_store();
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens.toml");
    let token = cairn_server::tokens::create(&tokens, "r", &[Scope::Read]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = ServerConfig {
        tokens: Some(tokens),
        ..ServerConfig::default()
    };
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(cairn_server::serve(listener, store, config, async {
        let _ = stopped.await;
    }));
    let client = cairn_store::connect(&url, &with_token(Some(&token)))
        .await
        .unwrap();
    drop(moto);

    let digest = Digest::of(b"anything");
    let err = client.blobs.get_bytes(&digest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let raw = http()
        .get(format!("{url}/v1/blobs/{}/{}", digest.hex(), digest.size()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 503);
    let text = raw.text().await.unwrap();
    assert!(text.contains("unavailable"), "{text}");
    assert!(
        !text.contains("127.0.0.1") && !text.contains("s3"),
        "{text}"
    );
}
