//! cairn's blob API: `POST /v1/blobs/missing`,
//! `GET/HEAD/PUT /v1/blobs/<hex>/<size>` and `POST /v1/blobs/batch`.
//!
//! Unlike Bazel's paths these carry the size, so every read and write is
//! verified against a full digest without a lookup, and the server works
//! the same over any backend. Single-blob bodies stream both ways.
//!
//! A batch upload carries many small blobs in one request, framed as
//! `cairn_store::blob::batch` describes (at most 4,096 blobs and 4 MiB of
//! content; 413 beyond, 400 for a truncated body), so copying a tree of
//! small files costs a few hundred requests instead of one per file. The
//! whole batch is checked before anything is written: a blob whose bytes
//! do not hash to its digest is refused with 400 naming it, and then
//! nothing of the batch is stored. A local store writes the blobs with
//! its synchronous path on the blocking pool and makes them durable with
//! one flush per batch. Needs `write`, like a single upload.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_digest::Digest;
use cairn_store::blob::batch::{self, BatchError, MAX_BATCH_BODY};
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
    let bytes = read_limited(&state.buffers, body, MAX_QUERY, "missing-blobs query").await?;
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
        // Also a blob of this hash stored with another size: HEAD's 404.
        None => Err(ApiError::NotFound(format!(
            "blob {digest:#} is not in the store (no blob of that hash and size)"
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
    let _room = state.room.reserve(&state.store, digest.size())?;
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

/// `POST /v1/blobs/batch`: stores every blob of the body, or none if any
/// is malformed or corrupt; durable before the answer.
#[instrument(skip_all)]
pub async fn batch(
    State(state): State<crate::State>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    state.auth.check(&headers, &Scope::Write)?;
    let _room = state.room.reserve(&state.store, MAX_BATCH_BODY as u64)?;
    let body = read_limited(&state.buffers, body, MAX_BATCH_BODY, "batch upload").await?;
    let local = state.store.local.clone();
    // Hashing (and, for a local store, writing) is CPU and blocking I/O.
    let checked = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let blobs = verified(&body)?;
        match local {
            Some(fs) => {
                for (_, bytes) in &blobs {
                    fs.put_bytes_sync(bytes)?;
                }
                Ok(None)
            }
            None => Ok(Some(
                blobs.into_iter().map(|(d, b)| (d, b.to_vec())).collect(),
            )),
        }
    })
    .await
    .map_err(|e| ApiError::Internal(format!("storing a batch: {e}")))??;
    if let Some(blobs) = checked {
        state.store.blobs.put_many(blobs).await?;
    }
    // One flush for the whole batch, shared with concurrent uploads.
    state.flushes.wait(&state.store).await?;
    Ok(StatusCode::OK)
}

/// The blobs of a batch body, each checked against its digest.
fn verified(body: &Bytes) -> Result<Vec<(Digest, &[u8])>, ApiError> {
    let blobs = batch::decode(body).map_err(|e| match e {
        BatchError::Truncated { .. } => ApiError::BadRequest(e.to_string()),
        BatchError::TooManyBlobs | BatchError::TooManyBytes => ApiError::TooLarge(e.to_string()),
    })?;
    if let Some((digest, bytes)) = blobs.iter().find(|(d, b)| !d.matches(b)) {
        return Err(ApiError::BadRequest(format!(
            "blob {digest} is corrupt: its bytes hash to {:#}; nothing of this batch was stored",
            Digest::of(bytes)
        )));
    }
    Ok(blobs)
}
