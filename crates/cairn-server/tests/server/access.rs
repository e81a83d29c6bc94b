//! Tokens and scopes on every route.

use cairn_store::{ErrorKind, RefName};
use reqwest::Method;

use crate::harness::{http, Options, TestServer};

/// Every route, and whether it needs `read` (else a write scope).
fn routes() -> Vec<(Method, String, bool)> {
    let h = "ab".repeat(32);
    vec![
        (Method::GET, format!("/cas/{h}"), true),
        (Method::HEAD, format!("/cas/{h}"), true),
        (Method::PUT, format!("/cas/{h}"), false),
        (Method::GET, format!("/ac/{h}"), true),
        (Method::PUT, format!("/ac/{h}"), false),
        (Method::POST, "/v1/blobs/missing".into(), true),
        (Method::POST, "/v1/blobs/closures".into(), true),
        (Method::GET, format!("/v1/blobs/{h}/1"), true),
        (Method::HEAD, format!("/v1/blobs/{h}/1"), true),
        (Method::PUT, format!("/v1/blobs/{h}/1"), false),
        (Method::POST, format!("/v1/assemble/{h}/1"), false),
        (Method::POST, "/v1/blobs/batch".into(), false),
        (Method::GET, "/v1/refs?prefix=".into(), true),
        (Method::GET, "/v1/refs/a/b".into(), true),
        (Method::PUT, "/v1/refs/a/b".into(), false),
        (Method::DELETE, "/v1/refs/a/b".into(), false),
        (Method::GET, "/v1/watch?prefix=".into(), true),
        (Method::GET, "/metrics".into(), true),
    ]
}

async fn status(server: &TestServer, method: &Method, path: &str, token: Option<&str>) -> u16 {
    let mut rb = http()
        .request(method.clone(), format!("{}{path}", server.url))
        .header("If-Match", "\"1\"")
        .body("x");
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    rb.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn every_route_needs_a_known_token_with_the_right_scope() {
    let server = TestServer::start().await;
    for (method, path, is_read) in routes() {
        for token in [None, Some("cairn_unknown")] {
            let s = status(&server, &method, &path, token).await;
            assert_eq!(s, 401, "{method} {path} with {token:?}");
        }
        let wrong = if is_read { &server.write } else { &server.read };
        let s = status(&server, &method, &path, Some(wrong)).await;
        assert_eq!(s, 403, "{method} {path} with the wrong scope");
    }
    let health = http().get(format!("{}/healthz", server.url)).send().await;
    assert_eq!(health.unwrap().status(), 200, "healthz is open");
}

#[tokio::test]
async fn anonymous_read_opens_reads_only() {
    let server = TestServer::start_with(Options {
        anonymous_read: true,
        ..Options::default()
    })
    .await;
    for (method, path, is_read) in routes() {
        let s = status(&server, &method, &path, None).await;
        if is_read {
            assert!(s != 401 && s != 403, "{method} {path}: {s}");
        } else {
            assert_eq!(s, 401, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn a_service_token_writes_only_its_own_service() {
    let server = TestServer::start().await;
    let promote_a = server.client(&server.token("ci-a", &["promote:a"]));
    let fleet_a = server.client(&server.token("agent-a", &["fleet:a"]));
    let cases = [
        (&promote_a, "channels/a/prod", true),
        (&promote_a, "releases/a/1.0", true),
        (&promote_a, "channels/b/prod", false),
        (&promote_a, "releases/b/1.0", false),
        (&promote_a, "fleet/a/eu/rollout", false),
        (&fleet_a, "fleet/a/eu/members/m1", true),
        (&fleet_a, "fleet/b/eu/members/m1", false),
        (&fleet_a, "channels/a/prod2", false),
        (&fleet_a, "ac/00", false),
        (&server.client(&server.write), "ac/00", false),
    ];
    for (client, name, allowed) in cases {
        let name = RefName::new(name).unwrap();
        let result = client
            .refs
            .compare_and_swap(&name, None, b"v".to_vec())
            .await;
        match (allowed, result) {
            (true, Ok(_)) => {}
            (false, Err(e)) => {
                assert_eq!(e.kind(), ErrorKind::Forbidden, "{name}: {e}");
                assert!(e.to_string().contains("403"), "{name}: {e}")
            }
            (_, other) => panic!("{name}: allowed={allowed} but got {other:?}"),
        }
    }
}

#[tokio::test]
async fn without_tokens_writes_are_refused_with_how_to_create_one() {
    let server = TestServer::start_with(Options {
        with_tokens: false,
        ..Options::default()
    })
    .await;
    let r = http()
        .put(format!("{}/v1/refs/x", server.url))
        .header("If-None-Match", "*")
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("cairn server token create"),
        "message should say how to create a token: {text}"
    );
}

#[tokio::test]
async fn a_token_created_while_the_server_runs_works_at_once() {
    let server = TestServer::start().await;
    let late = "cairn_late";
    assert_eq!(
        status(&server, &Method::GET, "/v1/refs?prefix=", Some(late)).await,
        401
    );
    let token = server.token("late", &["read"]);
    assert_eq!(
        status(&server, &Method::GET, "/v1/refs?prefix=", Some(&token)).await,
        200
    );
    let other = server.token("later", &["admin"]);
    let store = server.client(&other);
    let name = RefName::new("x").unwrap();
    store
        .refs
        .compare_and_swap(&name, None, b"1".to_vec())
        .await
        .unwrap();
}
