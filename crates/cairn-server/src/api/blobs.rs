//! cairn's blob API: `POST /v1/blobs/missing` and
//! `GET/HEAD/PUT /v1/blobs/<hex>/<size>`.
//!
//! Unlike Bazel's paths these carry the size, so every read and write is
//! verified against a full digest without a lookup, and the server works
//! the same over any backend. Bodies stream both ways.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_digest::Digest;
use serde::{Deserialize, Serialize};
use tracing::instrument;

use super::parse_digest;
use crate::body::{blob_response, read_limited, upload, upload_error};
use crate::error::ApiError;
use crate::tokens::Scope;

/// The largest missing-blobs query body (about 100k digests).
const MAX_QUERY: usize = 16 << 20;

/// `POST /v1/blobs/missing` request body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MissingQuery {
    digests: Vec<Digest>,
}

/// `POST /v1/blobs/missing` response body.
#[derive(Serialize)]
pub struct Missing {
    missing: Vec<Digest>,
}

/// `POST /v1/blobs/missing`: which of these digests the store lacks.
#[instrument(skip_all)]
pub async fn missing(
    State(state): State<crate::State>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Missing>, ApiError> {
    state.auth.check(&headers, &Scope::Read)?;
    let bytes = read_limited(body, MAX_QUERY, "missing-blobs query").await?;
    let query: MissingQuery = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("malformed missing-blobs query: {e}")))?;
    let have = state.store.blobs.has_many(&query.digests).await?;
    let missing = query
        .digests
        .into_iter()
        .zip(have)
        .filter_map(|(d, has)| (!has).then_some(d))
        .collect();
    Ok(Json(Missing { missing }))
}

/// `GET /v1/blobs/<hex>/<size>`
#[instrument(skip_all, fields(hash = %hash, size = %size))]
pub async fn get(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Path((hash, size)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state.auth.check(&headers, &Scope::Read)?;
    let digest = parse_digest(&hash, &size)?;
    match state.store.blobs.get(&digest).await? {
        Some(reader) => Ok(blob_response(Some(reader), digest.size())),
        None => Err(ApiError::NotFound(format!(
            "blob {digest} is not in the store"
        ))),
    }
}

/// `HEAD /v1/blobs/<hex>/<size>`
#[instrument(skip_all, fields(hash = %hash, size = %size))]
pub async fn head(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Path((hash, size)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state.auth.check(&headers, &Scope::Read)?;
    let digest = parse_digest(&hash, &size)?;
    let has = state.store.blobs.has_many(&[digest]).await?;
    Ok(match has[0] {
        true => blob_response(None, digest.size()),
        false => StatusCode::NOT_FOUND.into_response(),
    })
}

/// `PUT /v1/blobs/<hex>/<size>`: stores the body if it hashes to the
/// digest (400 and nothing stored if not), then makes it durable.
#[instrument(skip_all, fields(hash = %hash, size = %size))]
pub async fn put(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Path((hash, size)): Path<(String, String)>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    state.auth.check(&headers, &Scope::Write)?;
    let digest = parse_digest(&hash, &size)?;
    let (reader, broken) = upload(body);
    state
        .store
        .blobs
        .put(&digest, reader)
        .await
        .map_err(|e| upload_error(e, &broken))?;
    // Durable before we answer: a client may write a ref naming it next.
    state.flushes.wait(&state.store).await?;
    Ok(StatusCode::OK)
}
