//! The Bazel HTTP remote-cache paths, and the metrics they feed.

use cairn_digest::Digest;
use cairn_store::RefName;
use cairn_tree::proto::{self, ActionResult, OutputFile};
use prost::Message;

use crate::harness::{http, TestServer};

/// An encoded `ActionResult` with these output files.
fn action_result(files: &[(&str, Digest)]) -> Vec<u8> {
    ActionResult {
        output_files: files
            .iter()
            .map(|(path, d)| OutputFile {
                path: path.to_string(),
                digest: Some(proto::Digest::from(*d)),
                is_executable: false,
            })
            .collect(),
        ..ActionResult::default()
    }
    .encode_to_vec()
}

#[tokio::test]
async fn cas_and_ac_round_trip_and_share_the_action_cache_ref() {
    let server = TestServer::start().await;
    let blob = b"an output file".to_vec();
    let d = Digest::of(&blob);
    let cas = format!("{}/cas/{}", server.url, d.hex());
    let c = http();
    let miss = c.get(&cas).bearer_auth(&server.read).send().await.unwrap();
    assert_eq!(miss.status(), 404);
    let put = c.put(&cas).bearer_auth(&server.write).body(blob.clone());
    assert_eq!(put.send().await.unwrap().status(), 200);
    let head = c.head(&cas).bearer_auth(&server.read).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        blob.len().to_string()
    );
    let got = c.get(&cas).bearer_auth(&server.read).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), blob);

    let action = "cd".repeat(32);
    let ac = format!("{}/ac/{action}", server.url);
    let result = action_result(&[("out/a", d)]);
    assert_eq!(
        c.get(&ac)
            .bearer_auth(&server.read)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let first = action_result(&[("out/a", d), ("out/b", d)]);
    for value in [first, result.clone()] {
        let put = c.put(&ac).bearer_auth(&server.write).body(value);
        assert_eq!(put.send().await.unwrap().status(), 200, "overwrite allowed");
    }
    let got = c.get(&ac).bearer_auth(&server.read).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), result);
    let stored = cairn_store::RefStore::get(
        server.fs.as_ref(),
        &RefName::new(format!("ac/{action}")).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        stored.value, result,
        "ac/<hex> holds the ActionResult bytes"
    );

    let metrics = c
        .get(format!("{}/metrics", server.url))
        .bearer_auth(&server.read)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "cairn_cache_lookups_total{cache=\"ac\",result=\"hit\"} 1",
        "cairn_cache_lookups_total{cache=\"ac\",result=\"miss\"} 1",
        "cairn_cache_lookups_total{cache=\"cas\",result=\"hit\"} 1",
        "cairn_cache_lookups_total{cache=\"cas\",result=\"miss\"} 1",
        "cairn_http_requests_total{route=\"/cas/{hash}\",method=\"PUT\",status=\"200\"} 1",
        "cairn_http_request_duration_seconds_count{route=\"/ac/{hash}\"}",
        "cairn_http_request_bytes_total",
    ] {
        assert!(metrics.contains(line), "metrics lack {line:?}:\n{metrics}");
    }
}

#[tokio::test]
async fn an_action_result_that_is_not_one_or_names_missing_blobs_is_refused() {
    let server = TestServer::start().await;
    let c = http();
    let blob = b"an output file".to_vec();
    let d = Digest::of(&blob);
    let cas = format!("{}/cas/{}", server.url, d.hex());
    let put = c.put(&cas).bearer_auth(&server.write).body(blob);
    assert_eq!(put.send().await.unwrap().status(), 200);
    let ac = format!("{}/ac/{}", server.url, "cd".repeat(32));
    let good = action_result(&[("out/a", d)]);
    let put = c.put(&ac).bearer_auth(&server.write).body(good.clone());
    assert_eq!(put.send().await.unwrap().status(), 200);

    let missing = Digest::of(b"never uploaded");
    let with_stdout = ActionResult {
        stdout_digest: Some(proto::Digest::from(missing)),
        ..ActionResult::decode(&good[..]).unwrap()
    };
    let refusals = [
        (
            b"\xff\xff\xff".to_vec(),
            "is not an encoded ActionResult".to_string(),
        ),
        (
            action_result(&[("out/a", d), ("out/b", missing)]),
            format!("names output file \"out/b\" {missing}, which the store lacks"),
        ),
        (
            with_stdout.encode_to_vec(),
            format!("names stdout {missing}, which the store lacks"),
        ),
    ];
    for (body, needle) in refusals {
        let put = c.put(&ac).bearer_auth(&server.write).body(body);
        let answer = put.send().await.unwrap();
        assert_eq!(answer.status(), 400, "{needle}");
        let json: serde_json::Value =
            serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
        let message = json["error"].as_str().unwrap();
        assert!(message.contains(&needle), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
        assert!(message.contains("nothing stored"), "{message}");
    }
    let got = c.get(&ac).bearer_auth(&server.read).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), good, "the stored entry is kept");
}

#[tokio::test]
async fn the_refs_api_cannot_bypass_the_action_cache_checks() {
    let server = TestServer::start().await;
    let c = http();
    let put = |name: &str, body: Vec<u8>| {
        c.put(format!("{}/v1/refs/{name}", server.url))
            .bearer_auth(&server.write)
            .header("If-None-Match", "*")
            .body(body)
            .send()
    };
    let entry = format!("ac/{}", "cd".repeat(32));
    let missing = Digest::of(b"never uploaded");
    for body in [b"\xff\xff".to_vec(), action_result(&[("out/a", missing)])] {
        let answer = put(&entry, body).await.unwrap();
        assert_eq!(answer.status(), 400);
        let text = answer.text().await.unwrap();
        assert!(text.contains("nothing stored"), "{text}");
    }
    // Names under ac/ that are no entry are not the writer's to make.
    for name in ["ac/junk", &format!("{entry}/deeper")] {
        let answer = put(name, b"x".to_vec()).await.unwrap();
        assert_eq!(answer.status(), 403, "{name}");
        assert!(answer
            .text()
            .await
            .unwrap()
            .contains("lacks the scope admin"));
    }
    let stored = cairn_store::RefStore::list(server.fs.as_ref(), "ac/").await;
    assert!(stored.unwrap().is_empty(), "nothing was stored");
    // A complete entry goes through.
    let answer = put(&entry, action_result(&[])).await.unwrap();
    assert_eq!(answer.status(), 201);
}

/// An encoded `ActionResult` with one output directory.
fn with_output_directory(tree: Option<Digest>, root: Option<Digest>) -> Vec<u8> {
    ActionResult {
        output_directories: vec![proto::OutputDirectory {
            path: "out/dir".into(),
            tree_digest: tree.map(proto::Digest::from),
            root_directory_digest: root.map(proto::Digest::from),
        }],
        ..ActionResult::default()
    }
    .encode_to_vec()
}

fn file_node(name: &str, d: Digest) -> proto::FileNode {
    proto::FileNode {
        name: name.into(),
        digest: Some(d.into()),
        is_executable: false,
    }
}

#[tokio::test]
async fn an_output_directory_whose_files_are_missing_is_refused() {
    let server = TestServer::start().await;
    let c = http();
    let put_blob = |bytes: Vec<u8>| {
        let d = Digest::of(&bytes);
        let url = format!("{}/cas/{}", server.url, d.hex());
        let put = c.put(url).bearer_auth(&server.write).body(bytes);
        async move {
            assert_eq!(put.send().await.unwrap().status(), 200);
            d
        }
    };
    let present = put_blob(b"a file that is there".to_vec()).await;
    let missing = Digest::of(b"a file never uploaded");
    // A nested directory (root -> sub) whose sub lists the missing file,
    // as a Tree blob and as Directory blobs; every blob named directly is
    // in the store.
    let sub_missing = proto::Directory {
        files: vec![file_node("gone", missing)],
        ..Default::default()
    };
    let sub_whole = proto::Directory {
        files: vec![file_node("here", present)],
        ..Default::default()
    };
    let root_of = |sub: &proto::Directory| proto::Directory {
        files: vec![file_node("top", present)],
        directories: vec![proto::DirectoryNode {
            name: "sub".into(),
            digest: Some(Digest::of(&sub.encode_to_vec()).into()),
        }],
        ..Default::default()
    };
    let mut blobs = Vec::new();
    for sub in [&sub_missing, &sub_whole] {
        let root = root_of(sub);
        let tree = proto::Tree {
            root: Some(root.clone()),
            children: vec![sub.clone()],
        };
        put_blob(sub.encode_to_vec()).await;
        let root = put_blob(root.encode_to_vec()).await;
        let tree = put_blob(tree.encode_to_vec()).await;
        blobs.push((tree, root));
    }
    let [(bad_tree, bad_root), (good_tree, good_root)] = blobs[..] else {
        unreachable!()
    };
    let ac = format!("{}/ac/{}", server.url, "ef".repeat(32));
    let good = with_output_directory(Some(good_tree), Some(good_root));
    let put = c.put(&ac).bearer_auth(&server.write).body(good.clone());
    assert_eq!(put.send().await.unwrap().status(), 200);

    // A tree of more directories than a check walks: 2 bytes each.
    let wide = proto::Tree {
        root: Some(proto::Directory::default()),
        children: vec![proto::Directory::default(); 100_001],
    };
    let big_tree = put_blob(wide.encode_to_vec()).await;
    let refusals = [
        (
            with_output_directory(Some(bad_tree), None),
            format!("lists file {missing}, which the store lacks"),
        ),
        (
            with_output_directory(None, Some(bad_root)),
            format!("lists file {missing}, which the store lacks"),
        ),
        (
            with_output_directory(Some(big_tree), None),
            "holds more than 100000 directories, too many to check".to_string(),
        ),
    ];
    // Through the Bazel path and through the refs API alike.
    for (body, needle) in refusals {
        let put = c.put(&ac).bearer_auth(&server.write).body(body.clone());
        let answer = put.send().await.unwrap();
        assert_eq!(answer.status(), 400, "{needle}");
        let message = answer.text().await.unwrap();
        assert!(message.contains(&needle), "{message}");
        assert!(message.contains("nothing stored"), "{message}");
        let url = format!("{}/v1/refs/ac/{}", server.url, "12".repeat(32));
        let put = c
            .put(url)
            .bearer_auth(&server.write)
            .header("if-none-match", "*");
        let answer = put.body(body).send().await.unwrap();
        assert_eq!(answer.status(), 400, "refs API: {needle}");
    }
    let got = c.get(&ac).bearer_auth(&server.read).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), good, "the stored entry is kept");
}
