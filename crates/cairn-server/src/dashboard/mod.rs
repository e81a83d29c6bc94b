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
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use time::OffsetDateTime;
use tracing::instrument;

use crate::error::ApiError;
use crate::tokens::Scope;

/// Told to a browser that may not read.
const NEEDS_READ: &str = "<!doctype html><meta charset=\"utf-8\"><title>cairn</title>\
<h1>cairn</h1><p>The dashboard needs the <code>read</code> scope. Browsers cannot send a \
bearer token, so run the server with <code>--anonymous-read</code> to use it.</p>";

/// `GET /`: the dashboard page.
#[instrument(skip_all)]
pub async fn page(State(state): State<crate::State>, headers: HeaderMap) -> Response {
    if let Err(e) = state.auth.check(&headers, &Scope::Read) {
        let status = match e {
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            other => return other.into_response(),
        };
        return (status, Html(NEEDS_READ)).into_response();
    }
    match summary::build(&state.store, OffsetDateTime::now_utc()).await {
        Ok(summary) => no_store(Html(html::page(&summary))),
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
    let summary = summary::build(&state.store, OffsetDateTime::now_utc()).await?;
    Ok(no_store(Json(summary)))
}

/// A response browsers must not cache: it is always the store's present.
fn no_store(body: impl IntoResponse) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], body).into_response()
}
