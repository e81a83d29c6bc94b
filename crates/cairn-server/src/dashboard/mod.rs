//! The dashboard: `GET /` (an HTML page) and `GET /v1/dashboard` (the same
//! data as JSON), showing each service's channels, recent releases, fleet
//! members and rollout progress, updating live.
//!
//! **Shape.** [`summary::build`] reads the refs into one [`summary::Summary`];
//! [`html`] renders it with `write!` and a ten-line [`html::escape`]; the
//! JSON route serializes it as is. The page's inline script (`page.js`)
//! watches `/v1/watch?prefix=` and, 200 ms after the last change,
//! re-renders `<main>` from the JSON. Plain `write!` over a template crate
//! such as `maud`: the page is five small functions, so a macro DSL (and
//! its compile time) would buy little, and escaping by hand is one tested
//! function through which every interpolated string passes. No build step
//! and no external assets: CSS and JS are inlined from files beside this
//! one with `include_str!`.
//!
//! **Headers.** The page is sent with a `Content-Security-Policy` that
//! lets it run its own inline script and style sheet (by their SHA-256
//! hashes) and fetch from this server, and nothing else: no other script,
//! no inline event handler, no framing (`frame-ancestors 'none'`), no form
//! posting anywhere. Escaping keeps store text out of the markup; the
//! policy is the second wall, should an escape ever be missed, against a
//! ref name, release note or agent error written by whoever holds a write
//! token. `X-Content-Type-Options: nosniff` is sent with every response
//! (`api::router`).
//!
//! **Cost.** A summary reads every `channels/`, `releases/` and `fleet/`
//! ref, so one is built at a time and shared ([`Shared`]): requests that
//! arrive while it is built wait for it, and it is served again for up to
//! [`FRESH_FOR`] unless a ref changed meanwhile. Many readers polling the
//! page (anonymous ones, with `--anonymous-read`) thus cost the store one
//! summary per change or per [`FRESH_FOR`], not one each.
//!
//! **Auth.** Both routes need the `read` scope, like every read. A browser
//! cannot attach a bearer token to a page load or an `EventSource`, so in
//! practice the dashboard is for servers run with `--anonymous-read`;
//! without it the page answers 401 with a short explanation. Tokens in
//! `?token=` query strings were left out on purpose: they end up in
//! browser history, proxy and access logs and `Referer` headers.

mod fleet;
mod html;
mod summary;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use time::OffsetDateTime;
use tracing::instrument;

use crate::error::ApiError;
use crate::tokens::Scope;

/// How long a built summary is served again while no ref changes.
pub const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// The summary last built, shared by the requests that want one.
#[derive(Debug, Default)]
pub struct Shared {
    last: tokio::sync::Mutex<Option<Built>>,
}

#[derive(Debug)]
struct Built {
    at: tokio::time::Instant,
    /// The newest event id when it was built.
    event: u64,
    summary: std::sync::Arc<summary::Summary>,
}

impl Shared {
    /// The summary: the last one if it is fresh and no ref changed since,
    /// else a new one (built by one request while the others wait).
    async fn get(
        &self,
        state: &crate::State,
    ) -> Result<std::sync::Arc<summary::Summary>, ApiError> {
        let mut last = self.last.lock().await;
        let event = state.hub.latest();
        if let Some(b) = last.as_ref() {
            if b.event == event && b.at.elapsed() < FRESH_FOR {
                return Ok(b.summary.clone());
            }
        }
        let summary =
            std::sync::Arc::new(summary::build(&state.store, OffsetDateTime::now_utc()).await?);
        *last = Some(Built {
            at: tokio::time::Instant::now(),
            event,
            summary: summary.clone(),
        });
        Ok(summary)
    }
}

/// Told to a browser that may not read.
const NEEDS_READ: &str = "<!doctype html><meta charset=\"utf-8\"><title>cairn</title>\
<h1>cairn</h1><p>The dashboard needs the <code>read</code> scope. Browsers cannot send a \
bearer token, so run the server with <code>--anonymous-read</code> to use it.</p>";

/// The page's `Content-Security-Policy`: its own inline script and style
/// (by hash), requests to this origin, nothing more.
fn content_security_policy() -> &'static HeaderValue {
    static POLICY: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        use base64::Engine;
        use sha2::Digest;
        let hash = |text: &str| {
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text))
        };
        let policy = format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
             connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
            hash(html::SCRIPT),
            hash(html::STYLE)
        );
        HeaderValue::from_str(&policy).expect("a policy is a valid header")
    })
}

/// A page: HTML under the dashboard's policy.
fn guarded(status: StatusCode, page: String) -> Response {
    let mut response = (status, Html(page)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        content_security_policy().clone(),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /`: the dashboard page.
#[instrument(skip_all)]
pub async fn page(State(state): State<crate::State>, headers: HeaderMap) -> Response {
    if let Err(e) = state.auth.check(&headers, &Scope::Read) {
        let status = match e {
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            other => return other.into_response(),
        };
        return guarded(status, NEEDS_READ.into());
    }
    match state.summaries.get(&state).await {
        Ok(summary) => guarded(StatusCode::OK, html::page(&summary)),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/dashboard`: the dashboard's data as JSON.
#[instrument(skip_all)]
pub async fn json(
    State(state): State<crate::State>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.auth.check(&headers, &Scope::Read)?;
    let summary = state.summaries.get(&state).await?;
    Ok(no_store(Json(&*summary)))
}

/// A response browsers must not cache: it is always the store's present.
fn no_store(body: impl IntoResponse) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], body).into_response()
}
