//! `POST /v1/assemble/<hex>/<size>`: store a blob as the concatenation of
//! chunks the store already holds.
//!
//! A client copying a large file uploads only the chunks the server lacks
//! and then asks for the file by this route, instead of uploading the whole
//! file again (see `cairn-transfer`'s `chunks` module). The body is JSON,
//! `{"chunks": [{"hash": "sha256:…", "size": N}, …]}`, at most
//! [`MAX_CHUNKS`] entries whose sizes add up to the file's (else 400). The
//! store assembles in place where it can (a local directory); over a
//! backend that cannot (S3), the server reads the chunks and puts the
//! whole itself, which still spares the client the upload. The result is
//! verified like any upload: bytes that do not hash to the file are
//! refused with 400 and nothing is stored; a chunk the store lacks is a
//! 409 naming it. Needs `write`, like a blob upload.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use cairn_digest::Digest;
use cairn_store::assemble::{by_copy, check, MAX_CHUNKS};
use cairn_store::{Assembled, StoreError};
use serde::Deserialize;
use tracing::instrument;

use super::parse_digest;
use crate::body::read_limited;
use crate::error::ApiError;
use crate::tokens::Scope;

/// The largest request body: [`MAX_CHUNKS`] digests of about 100 bytes
/// of JSON each, with room to spare.
const MAX_BODY: usize = MAX_CHUNKS * 128 + 1024;

/// `POST /v1/assemble/<hex>/<size>` request body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssembleRequest {
    chunks: Vec<Digest>,
}

/// `POST /v1/assemble/<hex>/<size>`
#[instrument(skip_all, fields(hash = %hash, size = %size))]
pub async fn assemble(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Path((hash, size)): Path<(String, String)>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    state.auth.check(&headers, &Scope::Write)?;
    let file = parse_digest(&hash, &size)?;
    let _room = state.room.reserve(&state.store, file.size())?;
    let bytes = read_limited(&state.buffers, body, MAX_BODY, "assemble request").await?;
    let request: AssembleRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("malformed assemble request: {e}")))?;
    let chunks = request.chunks;
    check(&file, &chunks).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let blobs = &state.store.blobs;
    match blobs.assemble(&file, &chunks).await.map_err(refused)? {
        Assembled::Stored => {}
        Assembled::Unsupported => by_copy(blobs.clone(), &file, &chunks)
            .await
            .map_err(refused)?,
    }
    // Durable before we answer, as for an upload.
    state.flushes.wait(&state.store).await?;
    Ok(StatusCode::OK)
}

/// A missing chunk is the client's to fix (upload it first): 409.
fn refused(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(chunk) => ApiError::Conflict(format!(
            "chunk {chunk} is not in the store; upload it before assembling"
        )),
        e => e.into(),
    }
}
