//! Bad input of every kind: wrong bytes, broken-off uploads, oversized
//! refs, malformed JSON, path traversal. Each is refused with a clean
//! status and leaves nothing behind.

use tokio::io::AsyncWriteExt;

use cairn_digest::Digest;
use cairn_store::refs::MAX_REF_SIZE;

use crate::harness::{eventually, http, TestServer};

const BLOB_A: &[u8] = b"blob A, the one the digest names";
const BLOB_B: &[u8] = b"blob B, same length, other bytes";

#[tokio::test]
async fn upload_whose_bytes_do_not_match_is_400_and_stores_nothing() {
    let server = TestServer::start().await;
    assert_eq!(BLOB_A.len(), BLOB_B.len());
    let a = Digest::of(BLOB_A);
    for path in [
        format!("/v1/blobs/{}/{}", a.hex(), a.size()),
        format!("/cas/{}", a.hex()),
    ] {
        let response = http()
            .put(format!("{}{path}", server.url))
            .bearer_auth(&server.admin)
            .body(BLOB_B)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let text = response.text().await.unwrap();
        assert!(text.contains("corrupt"), "{path}: {text}");
        assert!(!server.fs.has_sync(&a), "{path} stored a lie");
        assert!(!server.fs.blob_path(&a).exists());
    }
    assert_eq!(server.tmp_files(), 0);
}

#[tokio::test]
async fn truncated_upload_stores_nothing() {
    let server = TestServer::start().await;
    let blob = vec![7u8; 1 << 20];
    let d = Digest::of(&blob);
    for path in [
        format!("/v1/blobs/{}/{}", d.hex(), d.size()),
        format!("/cas/{}", d.hex()),
    ] {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
            server.admin,
            blob.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&blob[..blob.len() / 2]).await.unwrap();
        drop(s);
        eventually("the broken upload's temp file is removed", || {
            server.tmp_files() == 0
        })
        .await;
        assert!(!server.fs.has_sync(&d), "{path}: truncated upload stored");
    }
}

#[tokio::test]
async fn oversized_ref_is_413() {
    let server = TestServer::start().await;
    let big = vec![b'x'; MAX_REF_SIZE + 1];
    let put = |path: &str| {
        http()
            .put(format!("{}{path}", server.url))
            .bearer_auth(&server.admin)
            .header("If-None-Match", "*")
            .body(big.clone())
            .send()
    };
    assert_eq!(put("/v1/refs/too/big").await.unwrap().status(), 413);
    assert_eq!(
        put(&format!("/ac/{}", "ab".repeat(32)))
            .await
            .unwrap()
            .status(),
        413
    );
    assert!(std::fs::read_dir(server.root.join("refs")).unwrap().count() == 0);
}

#[tokio::test]
async fn malformed_json_and_bad_parameters_are_400() {
    let server = TestServer::start().await;
    let post = http()
        .post(format!("{}/v1/blobs/missing", server.url))
        .bearer_auth(&server.admin)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 400);
    assert!(post.text().await.unwrap().contains("malformed"));
    let root = format!(
        r#"{{"digest": {{"hash": "sha256:{}", "size": 1}}, "kind": "tree"}}"#,
        "ab".repeat(32)
    );
    let too_many = format!(
        r#"{{"roots": [{}]}}"#,
        vec![root.as_str(); cairn_store::closure::MAX_ROOTS + 1].join(",")
    );
    for (body, says) in [
        ("{not json".to_string(), "malformed"),
        (root.replace("tree", "forest"), "malformed"),
        (too_many, "at most"),
    ] {
        let post = http()
            .post(format!("{}/v1/blobs/closures", server.url))
            .bearer_auth(&server.admin)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), 400);
        let text = post.text().await.unwrap();
        assert!(text.contains(says), "{text}");
    }
    for path in [
        "/cas/XYZ".to_string(),
        format!("/v1/blobs/{}/notasize", "ab".repeat(32)),
        "/v1/refs?prefix=../x".to_string(),
        "/v1/watch?prefix=/etc".to_string(),
    ] {
        let r = http()
            .get(format!("{}{path}", server.url))
            .bearer_auth(&server.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
    }
    let no_precondition = http()
        .put(format!("{}/v1/refs/x", server.url))
        .bearer_auth(&server.admin)
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(no_precondition.status(), 428);
}

#[tokio::test]
async fn path_traversal_is_refused_and_writes_nothing_outside() {
    let server = TestServer::start().await;
    let auth = format!("Authorization: Bearer {}\r\n", server.admin);
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
    let put = |path: &str| {
        format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\n{auth}If-None-Match: *\r\nContent-Length: 1\r\n\r\nx"
        )
    };
    let requests = [
        get("/cas/../x"),
        get("/cas/..%2f..%2fcairn-store"),
        get("/v1/refs/../../etc/passwd"),
        get("/v1/refs/%2e%2e/%2e%2e/etc/passwd"),
        get("/v1/refs/a/%2e%2e/%2e%2e/cairn-store"),
        get("/v1/blobs/..%2f..%2fcairn-store/13"),
        put("/v1/refs/../../escape"),
        put("/v1/refs/%2e%2e/%2e%2e/escape"),
        put("/v1/refs/..%2f..%2fescape"),
        put("/cas/..%2f..%2fescape"),
        put("/ac/..%2f..%2fescape"),
    ];
    for request in &requests {
        let status = server.raw(request.as_bytes()).await;
        assert!(
            status == 400 || status == 404,
            "{status} for {}",
            request.lines().next().unwrap()
        );
    }
    let parent = server.root.parent().unwrap();
    assert!(!parent.join("escape").exists());
    assert!(!server.root.join("escape").exists());
    assert!(std::fs::read_dir(server.root.join("refs")).unwrap().count() == 0);
}

#[tokio::test]
async fn a_ref_in_the_way_of_another_is_400_naming_it_and_both_are_kept() {
    let server = TestServer::start().await;
    let put = |name: &str| {
        http()
            .put(format!("{}/v1/refs/{name}", server.url))
            .bearer_auth(&server.admin)
            .header("If-None-Match", "*")
            .body(format!("value of {name}"))
            .send()
    };
    assert_eq!(put("team/a").await.unwrap().status(), 201);
    assert_eq!(put("team/b/c").await.unwrap().status(), 201);
    // A ref below a ref, at two depths; a ref where refs live below.
    let cases = [
        ("team/a/x", "ref team/a exists"),
        ("team/a/x/y", "ref team/a exists"),
        ("team/b", "ref team/b/c exists"),
    ];
    for (name, needle) in cases {
        let answer = put(name).await.unwrap();
        assert_eq!(answer.status(), 400, "{name}");
        let text = answer.text().await.unwrap();
        assert!(
            text.contains(&format!("ref {name} cannot be written")),
            "{text}"
        );
        assert!(text.contains(needle), "{text}");
    }
    for name in ["team/a", "team/b/c"] {
        let got = http()
            .get(format!("{}/v1/refs/{name}", server.url))
            .bearer_auth(&server.read)
            .send()
            .await
            .unwrap();
        assert_eq!(got.text().await.unwrap(), format!("value of {name}"));
    }
    let refs = cairn_store::RefStore::list(server.fs.as_ref(), "team/").await;
    let refs: Vec<String> = refs.unwrap().iter().map(|n| n.to_string()).collect();
    assert_eq!(refs, ["team/a", "team/b/c"]);
}

/// A name a local store cannot hold as a file (a segment past 250 bytes,
/// 255 with `.lock`) is a 400 naming the rule, not a 500 with a server
/// path in the log; an error shows at most 200 characters of a name.
#[tokio::test]
async fn a_ref_name_segment_too_long_for_a_file_is_400() {
    let server = TestServer::start().await;
    let long = format!("flood/{}", "x".repeat(251));
    let answer = http()
        .put(format!("{}/v1/refs/{long}", server.url))
        .bearer_auth(&server.admin)
        .header("If-None-Match", "*")
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let text = answer.text().await.unwrap();
    assert!(
        text.contains("a segment may be at most 250 bytes"),
        "{text}"
    );
    assert!(text.contains("(257 bytes)") && text.len() < 400, "{text}");
    let refs = cairn_store::RefStore::list(server.fs.as_ref(), "flood/").await;
    assert!(refs.unwrap().is_empty());
    assert_eq!(server.tmp_files(), 0);
}
