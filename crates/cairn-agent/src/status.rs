//! What the agent reports: its member record in the store
//! (`fleet/<service>/<set>/members/<id>`), and the same with more detail on
//! a local HTTP endpoint (`/status` as JSON, `/metrics` for Prometheus,
//! `/healthz`).
//!
//! The agent's loop publishes a [`Status`] on a `watch` channel whenever it
//! changes; a reporter task writes the member record on every change and
//! at least every heartbeat interval (by compare-and-swap, re-reading on a
//! conflict), and the HTTP endpoint serves the latest value. A store that
//! cannot be written to is retried at the next change or heartbeat; the
//! service is never held up by reporting.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cairn_digest::Digest;
use cairn_rollout::{member_ref, Health, MemberRecord};
use cairn_store::{RefName, Store, StoreError, Version};
use serde::Serialize;
use tokio::sync::watch;

use crate::state::{FailedRelease, Role};

/// Everything the agent reports.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The member record written to the store.
    pub member: MemberRecord,
    /// The service.
    pub service: String,
    /// The channel.
    pub channel: String,
    /// The deployment set.
    pub set: String,
    /// The generation `current` points at.
    pub current: Option<CurrentView>,
    /// Service processes.
    pub processes: Vec<ProcessView>,
    /// The last update's timings.
    pub last_update: Option<UpdateTimings>,
    /// Releases that failed (not retried until a newer statement).
    pub failed: Vec<FailedRelease>,
    /// The last refusal of a channel statement, if the newest was refused.
    pub refused: Option<String>,
    /// Counters since the agent started.
    pub counters: Counters,
}

/// The current generation.
#[derive(Clone, Debug, Serialize)]
pub struct CurrentView {
    /// Its number.
    pub generation: u64,
    /// Its release.
    pub release: Digest,
    /// The release's version.
    pub version: String,
}

/// One service process.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessView {
    /// Its pid.
    pub pid: i32,
    /// Its generation.
    pub generation: u64,
    /// What it is doing.
    pub role: Role,
}

/// When each step of an update ended, in Unix milliseconds (0: not
/// reached), and what it moved.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UpdateTimings {
    /// The release.
    pub release: Option<Digest>,
    /// Its version.
    pub version: String,
    /// The channel change was noticed (the read that found it began).
    pub noticed: i64,
    /// The statement and release were verified.
    pub verified: i64,
    /// The release was in the local store.
    pub fetched: i64,
    /// Its generation was written out.
    pub materialized: i64,
    /// The new process was running.
    pub started: i64,
    /// It passed its health check.
    pub healthy: i64,
    /// The old process had exited.
    pub old_stopped: i64,
    /// The update ended (after the bake time, hooks, pruning).
    pub done: i64,
    /// Bytes copied into the local store.
    pub fetched_bytes: u64,
    /// Blobs copied.
    pub fetched_blobs: u64,
    /// `swapped`, `rolled-back` or `aborted`, once it ended.
    pub outcome: String,
}

/// Counters since the agent started.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counters {
    /// Updates that ended with the new release serving.
    pub swaps: u64,
    /// Updates rolled back.
    pub rollbacks: u64,
    /// Service restarts after it exited on its own.
    pub restarts: u64,
    /// Statements refused.
    pub refusals: u64,
    /// Failed attempts to read the store.
    pub store_errors: u64,
    /// Failed fetches.
    pub fetch_errors: u64,
    /// Bytes fetched.
    pub fetched_bytes: u64,
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_millis() as i64
}

/// How long one write of the member record may take before it is given up
/// and retried: a write on a connection whose peer went silent (a host cut
/// off the network) would otherwise hang until TCP gives up, and the
/// record would stay stale long after the network is back.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes the member record whenever it changes (heartbeat aside) and at
/// least every `heartbeat`; runs until the sender is dropped or the member
/// is stopped. A failed write is retried with backoff (1 s doubling to the
/// heartbeat interval) and logged once until a write succeeds again.
pub async fn report(store: Store, mut status: watch::Receiver<Status>, heartbeat: Duration) {
    let first = status.borrow().clone();
    let Ok(name) = RefName::new(member_ref(&first.service, &first.set, &first.member.agent)) else {
        return;
    };
    let mut version: Option<Version> = None;
    let mut written: Option<MemberRecord> = None;
    let mut last_write = tokio::time::Instant::now();
    let mut failing = false;
    let mut retry = Duration::from_secs(1);
    loop {
        let mut record = status.borrow_and_update().member.clone();
        let due = last_write.elapsed() >= heartbeat;
        let changed = written
            .as_ref()
            .is_none_or(|w| !same_but_heartbeat(w, &record));
        let mut wait = heartbeat.saturating_sub(last_write.elapsed());
        if changed || due {
            record.heartbeat = now_ms() / 1000;
            let written_in_time =
                tokio::time::timeout(WRITE_TIMEOUT, write(&store, &name, &record, &mut version));
            let result = match written_in_time.await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer in {}s", WRITE_TIMEOUT.as_secs())),
            };
            match result {
                Ok(()) => {
                    if failing {
                        tracing::info!("member record {name} written again");
                    }
                    failing = false;
                    retry = Duration::from_secs(1);
                    written = Some(record.clone());
                    last_write = tokio::time::Instant::now();
                    wait = heartbeat;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("writing member record {name}: {e}");
                    }
                    failing = true;
                    wait = retry;
                    retry = (retry * 2).min(heartbeat);
                }
            }
        }
        if record.state == cairn_rollout::MemberState::Stopped && !failing {
            return;
        }
        let sleep = tokio::time::sleep(wait);
        tokio::select! {
            changed = status.changed(), if !failing => if changed.is_err() { return },
            _ = sleep => {}
        }
    }
}

fn same_but_heartbeat(a: &MemberRecord, b: &MemberRecord) -> bool {
    MemberRecord {
        heartbeat: b.heartbeat,
        ..a.clone()
    } == *b
}

/// Writes `record` by compare-and-swap at `version`, re-reading the
/// version on a conflict (a few times).
pub(crate) async fn write(
    store: &Store,
    name: &RefName,
    record: &MemberRecord,
    version: &mut Option<Version>,
) -> Result<(), StoreError> {
    for _ in 0..3 {
        match store
            .refs
            .compare_and_swap(name, version.as_ref(), record.to_json())
            .await
        {
            Ok(v) => {
                *version = Some(v);
                return Ok(());
            }
            Err(StoreError::Conflict { .. }) => {
                *version = store.refs.get(name).await?.map(|v| v.version);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Serves `/status`, `/metrics` and `/healthz` on `listener` until the
/// sender of `status` is dropped.
pub async fn serve(listener: tokio::net::TcpListener, status: watch::Receiver<Status>) {
    let mut done = status.clone();
    let app = Router::new()
        .route("/status", get(status_json))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(status);
    let shutdown = async move { while done.changed().await.is_ok() {} };
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
}

/// Binds the status endpoint's address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

type Shared = State<watch::Receiver<Status>>;

async fn status_json(State(s): Shared) -> Json<Status> {
    Json(s.borrow().clone())
}

async fn healthz(State(s): Shared) -> Response {
    match s.borrow().member.health {
        Health::Healthy => (StatusCode::OK, "healthy\n").into_response(),
        other => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", serde_json::to_string(&other).unwrap_or_default()),
        )
            .into_response(),
    }
}

async fn metrics(State(s): Shared) -> Response {
    let body = render_metrics(&s.borrow());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// The Prometheus text for `s`.
pub fn render_metrics(s: &Status) -> String {
    let labels = format!("service=\"{}\",set=\"{}\"", s.service, s.set);
    let mut out = String::new();
    let c = &s.counters;
    let counters = [
        (
            "swaps_total",
            "Updates that ended with the new release serving.",
            c.swaps,
        ),
        ("rollbacks_total", "Updates rolled back.", c.rollbacks),
        (
            "restarts_total",
            "Service restarts after it exited on its own.",
            c.restarts,
        ),
        ("refusals_total", "Channel statements refused.", c.refusals),
        (
            "store_errors_total",
            "Failed reads of the store.",
            c.store_errors,
        ),
        ("fetch_errors_total", "Failed fetches.", c.fetch_errors),
        (
            "fetched_bytes_total",
            "Bytes copied into the local store.",
            c.fetched_bytes,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP cairn_agent_{name} {help}");
        let _ = writeln!(out, "# TYPE cairn_agent_{name} counter");
        let _ = writeln!(out, "cairn_agent_{name}{{{labels}}} {value}");
    }
    let healthy = u8::from(s.member.health == Health::Healthy);
    let gauges = [
        (
            "healthy",
            "1 when the service passes its health check.",
            healthy as u64,
        ),
        (
            "generation",
            "The generation running.",
            s.member.generation.unwrap_or(0),
        ),
        (
            "sequence",
            "The channel sequence of the release running.",
            s.member.sequence.unwrap_or(0),
        ),
        (
            "processes",
            "Service processes alive.",
            s.processes.len() as u64,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP cairn_agent_{name} {help}");
        let _ = writeln!(out, "# TYPE cairn_agent_{name} gauge");
        let _ = writeln!(out, "cairn_agent_{name}{{{labels}}} {value}");
    }
    out
}
