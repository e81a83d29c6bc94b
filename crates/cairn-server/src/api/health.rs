//! `/healthz` (no token: for load balancers and the CLI's readiness
//! checks) and Prometheus `/metrics` (a read token, unless anonymous reads
//! are allowed).

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;

use crate::error::ApiError;
use crate::tokens::Scope;

/// `GET /healthz`
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /metrics`
pub async fn metrics(
    State(state): State<crate::State>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    state.auth.check(&headers, &Scope::Read)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}
