//! Watching refs through the server's `/v1/watch` event stream.
//!
//! The first connection is made before [`watch`] returns (so a write that
//! follows is seen, and a bad token fails at once). After that the stream
//! reconnects by itself, with backoff, sending the last event id it saw as
//! `Last-Event-ID`: the server replays what was missed, or says `reset`,
//! in which case every ref under the prefix is reported as changed (the
//! caller re-reads them, which is what a reset requires).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::{header, Method};

use super::sse::{Overlong, SseEvent, SseParser, MAX_EVENT};
use super::HttpStore;
use crate::error::Result;
use crate::refs::{RefEvent, RefName, RefWatch};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

type Body = BoxStream<'static, reqwest::Result<Bytes>>;

struct Watcher {
    store: HttpStore,
    prefix: String,
    last_id: Option<String>,
    body: Option<Body>,
    parser: SseParser,
    pending: VecDeque<Result<RefEvent>>,
    backoff: Duration,
}

/// Opens the event stream for `prefix`.
pub(super) async fn watch(store: HttpStore, prefix: String) -> Result<RefWatch> {
    let body = connect(&store, &prefix, None).await?;
    let watcher = Watcher {
        store,
        prefix,
        last_id: None,
        body: Some(body),
        parser: SseParser::default(),
        pending: VecDeque::new(),
        backoff: Duration::from_millis(100),
    };
    Ok(futures::stream::unfold(watcher, |mut w| async move {
        let item = w.next_event().await;
        Some((item, w))
    })
    .boxed())
}

async fn connect(store: &HttpStore, prefix: &str, last_id: Option<&str>) -> Result<Body> {
    let what = format!("watching refs under {prefix:?}");
    let mut rb = store
        .request(Method::GET, "/v1/watch")
        .query(&[("prefix", prefix)])
        .header(header::ACCEPT, "text/event-stream");
    if let Some(id) = last_id {
        rb = rb.header("Last-Event-ID", id);
    }
    let response = store.send(rb, &what).await?;
    if !response.status().is_success() {
        return Err(store.failure(&what, response).await);
    }
    Ok(response.bytes_stream().boxed())
}

impl Watcher {
    async fn next_event(&mut self) -> Result<RefEvent> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return item;
            }
            let Some(body) = &mut self.body else {
                self.reconnect().await;
                continue;
            };
            match body.next().await {
                Some(Ok(chunk)) => match self.parser.feed(&chunk) {
                    Ok(events) => {
                        for event in events {
                            self.handle(event).await;
                        }
                    }
                    Err(Overlong) => {
                        tracing::warn!(
                            "watch: the server sent a line or event over {MAX_EVENT} bytes; reconnecting"
                        );
                        self.body = None;
                    }
                },
                Some(Err(e)) => {
                    tracing::debug!("watch stream broke: {e}");
                    self.body = None;
                }
                None => self.body = None,
            }
        }
    }

    async fn reconnect(&mut self) {
        tokio::time::sleep(self.backoff).await;
        match connect(&self.store, &self.prefix, self.last_id.as_deref()).await {
            Ok(body) => {
                self.body = Some(body);
                self.parser = SseParser::default();
                self.backoff = Duration::from_millis(100);
            }
            Err(e) => {
                tracing::warn!("reconnecting the ref watch: {e}");
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    async fn handle(&mut self, event: SseEvent) {
        if let Some(id) = event.id {
            self.last_id = Some(id);
        }
        match event.event.as_str() {
            "ref" => match RefName::new(event.data) {
                Ok(name) => self.pending.push_back(Ok(RefEvent { name })),
                Err(e) => tracing::warn!("watch: server sent a bad ref name: {e}"),
            },
            "reset" => match self.store.list_refs(&self.prefix).await {
                Ok(names) => self
                    .pending
                    .extend(names.into_iter().map(|name| Ok(RefEvent { name }))),
                Err(e) => self.pending.push_back(Err(e)),
            },
            _ => {} // hello, and kinds a newer server may add
        }
    }
}
