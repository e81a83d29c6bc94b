//! `cairn server`: one store served over HTTP.
//!
//! Three audiences share one listener:
//!
//! * **Bazel** (and any HTTP remote-cache client) through `/cas/<hex>` and
//!   `/ac/<hex>`; the action cache is the ref `ac/<hex>` holding the encoded
//!   REAPI `ActionResult`, the same ref cairn's own builds use.
//! * **cairn clients** (the `http(s)://` store backend in `cairn-store`)
//!   through `/v1/…`: batch missing-blob queries, streamed and verified
//!   blobs, many small blobs uploaded in one request, assembly of a large
//!   blob from chunks already uploaded, refs with ETags and `If-Match`,
//!   and a server-sent-events watch.
//! * **operators** through `/healthz`, Prometheus `/metrics` and the live
//!   dashboard at `/` (`dashboard`).
//!
//! The handlers are thin: each validates its input (digests, ref names),
//! checks the caller's bearer token (`auth`), calls the [`Store`] and maps
//! the result to a status. Errors are logged with their cause and returned
//! as a clean one-line JSON message (`error`).

mod api;
mod auth;
mod body;
mod conn;
mod dashboard;
mod durable;
mod error;
mod events;
mod metrics;
pub mod tls;
pub mod tokens;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use cairn_store::Store;
use tokio::net::TcpListener;

pub use conn::ConnectionLimits;
pub use tokens::{Scope, TokenError};

/// How a server behaves, apart from the store it serves.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// The tokens file (re-read when it changes); `None`: no tokens, so
    /// every write is refused.
    pub tokens: Option<PathBuf>,
    /// Serve reads without a token.
    pub anonymous_read: bool,
    /// How many recent ref events the watch endpoint keeps for clients that
    /// reconnect (`Last-Event-ID`); 0 picks the default.
    pub event_ring: usize,
    /// Serve HTTPS with this configuration (see [`tls::load`]); `None`:
    /// plain HTTP.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Connections per client and in total, and how long they may idle.
    pub limits: ConnectionLimits,
}

/// The default number of ref events kept for reconnecting watchers.
pub const DEFAULT_EVENT_RING: usize = 4096;

/// Everything a handler may use.
#[derive(Debug)]
pub(crate) struct AppState {
    pub store: Store,
    pub auth: auth::Auth,
    pub hub: events::EventHub,
    pub metrics: metrics::Metrics,
    /// The dashboard's summary, built once for many requests.
    pub summaries: dashboard::Shared,
    /// Memory for request bodies read whole, shared by all requests.
    pub buffers: body::Buffers,
    /// Free space reserved by uploads in flight.
    pub room: body::Room,
    /// Shares store flushes between concurrent uploads.
    pub flushes: durable::GroupFlush,
    /// Becomes `true` when the server starts shutting down, so that
    /// long-lived responses (watches) end and graceful shutdown can finish.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Shared state as handlers receive it.
pub(crate) type State = Arc<AppState>;

/// Serves `store` on `listener` until `shutdown` completes, then stops
/// accepting, ends open watches and waits for requests in flight. The
/// connection limits are lowered to fit the file-descriptor limit.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let ring = match config.event_ring {
        0 => DEFAULT_EVENT_RING,
        n => n,
    };
    let state = Arc::new(AppState {
        auth: auth::Auth::new(config.tokens.clone(), config.anonymous_read),
        hub: events::EventHub::new(ring),
        metrics: metrics::Metrics::default(),
        flushes: durable::GroupFlush::default(),
        room: body::Room::default(),
        buffers: body::Buffers::default(),
        summaries: dashboard::Shared::default(),
        store,
        stopping,
    });
    events::spawn_backend_feed(state.clone()).await;
    let (idle, rate) = (config.limits.idle_timeout, config.limits.min_rate);
    let router = api::router(state.clone()).layer(axum::middleware::map_request(
        move |req: axum::extract::Request| async move {
            req.map(|b| axum::body::Body::new(body::IdleBody::new(b, idle, rate)))
        },
    ));
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    let tls = config.tls.map(tokio_rustls::TlsAcceptor::from);
    let limits = config.limits.fitted_to_fd_limit();
    conn::serve(listener, router, tls, limits, state, shutdown).await
}
