//! Bazel's HTTP remote cache, content half: `GET/HEAD/PUT /cas/<hex>`.
//!
//! Bazel names CAS blobs by hash alone, so a GET must find the size before
//! it can build a [`Digest`] and verify what it serves: the store says it
//! ([`blob_size`]: a local file's length, an S3 object's size). The same
//! `HEAD` is how a cairn client resolves a digest printed without its
//! size. An upload's size
//! is its `Content-Length`; bytes that do not hash to the name are refused
//! with 400 and nothing is stored.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_digest::Digest;
use cairn_store::Store;
use tracing::instrument;

use super::parse_hash;
use crate::body::{blob_response, upload, upload_error};
use crate::error::ApiError;
use crate::metrics::Cache;
use crate::tokens::Scope;

/// Blobs up to this size are read whole rather than streamed.
const SMALL_BLOB: u64 = 64 * 1024;

/// `GET /cas/<hex>`
#[instrument(skip_all, fields(hash = %hash))]
pub async fn get(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    state.auth.check(&headers, &Scope::Read)?;
    let digest = match blob_size(&state.store, parse_hash(&hash)?).await? {
        Some(d) => d,
        None => return Ok(miss(&state)),
    };
    // Small blobs from a local store: one blocking read (verified) instead
    // of a blocking-pool round trip per open, read and close of a stream.
    if digest.size() <= SMALL_BLOB {
        if let Some(fs) = state.store.local.clone() {
            let read = tokio::task::spawn_blocking(move || fs.read_blob_sync(&digest))
                .await
                .map_err(|e| ApiError::Internal(format!("reading {digest}: {e}")))??;
            return Ok(match read {
                Some(bytes) => {
                    state.metrics.cache_lookup(Cache::Cas, true);
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/octet-stream")],
                        Body::from(bytes),
                    )
                        .into_response()
                }
                None => miss(&state),
            });
        }
    }
    match state.store.blobs.get(&digest).await? {
        Some(reader) => {
            state.metrics.cache_lookup(Cache::Cas, true);
            Ok(blob_response(Some(reader), digest.size()))
        }
        None => Ok(miss(&state)),
    }
}

/// `HEAD /cas/<hex>`
#[instrument(skip_all, fields(hash = %hash))]
pub async fn head(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    state.auth.check(&headers, &Scope::Read)?;
    match blob_size(&state.store, parse_hash(&hash)?).await? {
        Some(d) => Ok(blob_response(None, d.size())),
        None => Ok(StatusCode::NOT_FOUND.into_response()),
    }
}

/// `PUT /cas/<hex>`: the body is the blob; its length is its size.
#[instrument(skip_all, fields(hash = %hash))]
pub async fn put(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Path(hash): Path<String>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    state.auth.check(&headers, &Scope::Write)?;
    let hash = parse_hash(&hash)?;
    let size: u64 = super::header(&headers, header::CONTENT_LENGTH.as_str())
        .and_then(|v| v.parse().ok())
        .ok_or(ApiError::LengthRequired)?;
    let digest = Digest::from_hex(hash, size).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let _room = state.room.reserve(&state.store, size)?;
    let (reader, broken) = upload(body);
    state
        .store
        .blobs
        .put(&digest, reader)
        .await
        .map_err(|e| upload_error(e, &broken))?;
    state.flushes.wait(&state.store).await?;
    Ok(StatusCode::OK)
}

fn miss(state: &crate::State) -> Response {
    state.metrics.cache_lookup(Cache::Cas, false);
    (StatusCode::NOT_FOUND, "").into_response()
}

/// The full digest of the blob with this hash, if the store has it: the
/// store's own answer ([`cairn_store::BlobStore::lookup`]: a local file's
/// length, an S3 object's size), so Bazel's hash-only paths and cairn's
/// size-less digests work over every backend.
pub async fn blob_size(store: &Store, hash: &str) -> Result<Option<Digest>, ApiError> {
    let probe = Digest::from_hex(hash, 0).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(store.blobs.lookup(probe.hash()).await?)
}
