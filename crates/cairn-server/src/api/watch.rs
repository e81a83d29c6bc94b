//! `GET /v1/watch?prefix=…`: ref changes as server-sent events.
//!
//! Each event is `event: ref`, `data: <name>` with an `id:`; a fresh watch
//! first gets `event: hello` carrying the newest id, so a client always
//! has an id to resume from. A client reconnecting with `Last-Event-ID`
//! gets every change after it from the server's ring ([`crate::events`]),
//! or `event: reset` if the ring no longer reaches back that far (or the
//! client fell behind the live feed): it must then re-list the prefix.
//! Streams end when the server shuts down, so graceful shutdown finishes.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast;
use tracing::instrument;

use super::header;
use super::refs::PrefixQuery;
use crate::error::ApiError;
use crate::events::{Event, Start, Subscription};
use crate::tokens::Scope;

type Events = BoxStream<'static, Result<SseEvent, Infallible>>;

/// `GET /v1/watch?prefix=…`
#[instrument(skip_all, fields(prefix = %query.prefix().unwrap_or("?")))]
pub async fn watch(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Query(query): Query<PrefixQuery>,
) -> Result<Response, ApiError> {
    let prefix = query.prefix()?.to_string();
    state.auth.check(&headers, &Scope::Read)?;
    let after =
        match header(&headers, "last-event-id") {
            Some(id) => Some(id.trim().parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!("Last-Event-ID {id:?} is not a number"))
            })?),
            None => None,
        };
    let sub = state.hub.subscribe(after);
    let mut stopping = state.stopping.clone();
    let stream = events(sub, prefix)
        .take_until(Box::pin(async move {
            let _ = stopping.wait_for(|s| *s).await;
        }))
        .boxed();
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn events(sub: Subscription, prefix: String) -> Events {
    let latest = sub.latest;
    let first: Vec<SseEvent> = match sub.start {
        Start::Fresh => vec![control("hello", Some(latest))],
        Start::Reset => vec![control("reset", Some(latest))],
        Start::Replay(events) => events
            .iter()
            .filter(|e| e.name.as_str().starts_with(&prefix))
            .map(ref_event)
            .collect(),
    };
    let live = stream::unfold(sub.live, |mut rx| async move {
        match rx.recv().await {
            Ok(e) => Some((Some(e), rx)),
            // Fell behind the live feed: events were lost, so re-list.
            Err(broadcast::error::RecvError::Lagged(_)) => Some((None, rx)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
    .filter_map(move |e| {
        let out = match e {
            Some(e) if e.name.as_str().starts_with(&prefix) => Some(ref_event(&e)),
            Some(_) => None,
            None => Some(control("reset", None)),
        };
        futures::future::ready(out)
    });
    stream::iter(first).chain(live).map(Ok).boxed()
}

fn ref_event(e: &Event) -> SseEvent {
    SseEvent::default()
        .id(e.id.to_string())
        .event("ref")
        .data(e.name.as_str())
}

fn control(kind: &str, id: Option<u64>) -> SseEvent {
    let event = SseEvent::default().event(kind).data("");
    match id {
        Some(id) => event.id(id.to_string()),
        None => event,
    }
}
