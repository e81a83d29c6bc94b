//! `POST /v1/blobs/closures`: which of these blobs the store holds together
//! with everything they reach.
//!
//! A client copying a tree asks this about its directories first, then
//! `POST /v1/blobs/missing` only about blobs outside the subtrees the
//! server holds whole; re-copying a large tree after a small change thus
//! sends a small query instead of every digest of the closure. The body is
//! JSON, `{"roots": [{"digest": {"hash": "sha256:…", "size": N}, "kind":
//! "tree" | "leaf" | "unknown"}, …]}` with at most
//! [`MAX_ROOTS`](cairn_store::closure::MAX_ROOTS) roots (else 400); the
//! answer is `{"complete": [true, false, …]}` in the same order. The
//! server walks its own copy ([`cairn_store::closure`]), so a directory
//! stored without what it names is never reported complete. Needs `read`,
//! like the missing-blobs query.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use cairn_digest::Digest;
use cairn_store::closure::{has_closures, MAX_ROOTS};
use cairn_store::reach::Kind;
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::body::read_limited;
use crate::error::ApiError;
use crate::tokens::Scope;

/// The largest request body: [`MAX_ROOTS`] roots of about 120 bytes of
/// JSON each, with room to spare.
const MAX_BODY: usize = MAX_ROOTS * 160 + 1024;

/// One root of the question.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Root {
    digest: Digest,
    kind: Kind,
}

/// `POST /v1/blobs/closures` request body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClosuresQuery {
    roots: Vec<Root>,
}

/// `POST /v1/blobs/closures` response body.
#[derive(Serialize)]
pub struct Complete {
    complete: Vec<bool>,
}

/// `POST /v1/blobs/closures`
#[instrument(skip_all)]
pub async fn closures(
    State(state): State<crate::State>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Complete>, ApiError> {
    state.auth.check(&headers, &Scope::Read)?;
    let bytes = read_limited(&state.buffers, body, MAX_BODY, "closures query").await?;
    let query: ClosuresQuery = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("malformed closures query: {e}")))?;
    if query.roots.len() > MAX_ROOTS {
        return Err(ApiError::BadRequest(format!(
            "a closures query names at most {MAX_ROOTS} roots, not {}",
            query.roots.len()
        )));
    }
    let roots: Vec<(Digest, Kind)> = query.roots.iter().map(|r| (r.digest, r.kind)).collect();
    let blobs = &state.store.blobs;
    // A backend that cannot answer cheaply (S3) is walked from here: the
    // server pays the per-blob questions so the client does not.
    let complete = match blobs.has_closures(&roots).await? {
        Some(answer) => answer,
        None => has_closures(blobs.as_ref(), &roots).await?,
    };
    Ok(Json(Complete { complete }))
}
