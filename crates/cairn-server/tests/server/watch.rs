//! The server-sent-events watch: resuming with Last-Event-ID, resets, and
//! shutdown with watches open.

use std::time::Duration;

use cairn_store::RefName;
use futures::StreamExt;

use crate::harness::{http, Options, TestServer};

type Sse = (String, String, String);

/// Reads SSE events (kind, id, data) from a response until `n` arrived.
async fn read_events(response: reqwest::Response, n: usize) -> Vec<Sse> {
    read_until(response, |events| events.len() >= n).await
}

/// Reads SSE events (kind, id, data) until `done` says so.
async fn read_until(response: reqwest::Response, done: impl Fn(&[Sse]) -> bool) -> Vec<Sse> {
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    while !done(&events) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .unwrap_or_else(|_| panic!("no further event within 5 s; had {events:?}"))
            .expect("stream ended")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |f: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(f))
                    .map(|v| v.trim_start().to_string())
                    .unwrap_or_default()
            };
            if block.starts_with(':') {
                continue;
            }
            events.push((field("event:"), field("id:"), field("data:")));
        }
    }
    events
}

async fn watch(server: &TestServer, last_id: Option<&str>) -> reqwest::Response {
    let mut rb = http()
        .get(format!("{}/v1/watch?prefix=w/", server.url))
        .bearer_auth(&server.read);
    if let Some(id) = last_id {
        rb = rb.header("Last-Event-ID", id);
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r
}

async fn write(server: &TestServer, names: &[&str]) {
    let store = server.client(&server.admin);
    for n in names {
        let name = RefName::new(*n).unwrap();
        store
            .refs
            .compare_and_swap(&name, None, b"v".to_vec())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_watcher_that_reconnects_with_last_event_id_loses_nothing() {
    let server = TestServer::start().await;
    let first = watch(&server, None).await;
    write(&server, &["w/1"]).await;
    let events = read_events(first, 2).await; // hello, then w/1 (this connection drops here)
    assert_eq!(events[0].0, "hello");
    let seen = events
        .iter()
        .rev()
        .find(|e| e.2 == "w/1")
        .expect("w/1 seen");
    let last_id = seen.1.clone();
    write(&server, &["w/2", "other/x", "w/3"]).await;
    let again = watch(&server, Some(&last_id)).await;
    // Both arrive (a change may be reported twice: by the server and by
    // the store's own watch), and nothing outside the prefix does.
    let events = read_until(again, |events| {
        ["w/2", "w/3"]
            .iter()
            .all(|n| events.iter().any(|e| e.2 == *n))
    })
    .await;
    assert!(events.iter().all(|e| e.2.starts_with("w/")), "{events:?}");
}

#[tokio::test]
async fn a_watcher_whose_id_fell_out_of_the_ring_gets_a_reset() {
    let server = TestServer::start_with(Options {
        event_ring: 2,
        ..Options::default()
    })
    .await;
    let events = read_events(watch(&server, None).await, 1).await;
    let hello_id = events[0].1.clone();
    write(&server, &["w/1", "w/2", "w/3", "w/4"]).await;
    let events = read_events(watch(&server, Some(&hello_id)).await, 1).await;
    assert_eq!(events[0].0, "reset", "{events:?}");
}

#[tokio::test]
async fn the_http_backend_watch_sees_a_write() {
    let server = TestServer::start_with(Options {
        event_ring: 2,
        ..Options::default()
    })
    .await;
    let store = server.client(&server.admin);
    let mut events = cairn_store::RefStore::watch(store.refs.as_ref(), "w/")
        .await
        .unwrap()
        .unwrap();
    write(&server, &["w/a"]).await;
    let ev = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.name.as_str(), "w/a");
}

#[tokio::test]
async fn shutdown_ends_open_watches() {
    let mut server = TestServer::start().await;
    let open = watch(&server, None).await;
    server.stop().await;
    drop(open);
}
