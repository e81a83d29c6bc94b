//! The Bazel HTTP remote-cache paths, and the metrics they feed.

use cairn_digest::Digest;
use cairn_store::RefName;

use crate::harness::{http, TestServer};

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
    let result = b"\x0a\x02encoded ActionResult".to_vec();
    assert_eq!(
        c.get(&ac)
            .bearer_auth(&server.read)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    for value in [b"first".to_vec(), result.clone()] {
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
