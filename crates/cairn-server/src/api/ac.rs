//! Bazel's HTTP remote cache, action half: `GET/PUT /ac/<hex>`.
//!
//! An action-cache entry is the ref `ac/<hex>` holding the encoded REAPI
//! `ActionResult`, which is exactly where cairn's builds keep theirs, so
//! Bazel and cairn share hits. Bazel expects a PUT to overwrite, so the
//! write is a compare-and-swap against whatever is there, retried if
//! another writer slips in between.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_digest::Digest;
use cairn_store::refs::MAX_REF_SIZE;
use cairn_store::{RefName, StoreError};
use cairn_tree::proto::ActionResult;
use prost::Message;
use tracing::instrument;

use super::parse_hash;
use crate::body::read_limited;
use crate::error::ApiError;
use crate::metrics::Cache;
use crate::tokens::Scope;

/// How often a PUT retries a lost race before giving up.
const OVERWRITE_ATTEMPTS: usize = 8;

fn ac_ref(hash: &str) -> Result<RefName, ApiError> {
    let hash = parse_hash(hash)?;
    RefName::new(format!("ac/{hash}")).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Refuses (400) an entry for the action `hash` that is not an encoded
/// `ActionResult`, names a non-empty blob the store lacks, or has an
/// output directory listing a file the store lacks (or too large to
/// check: [`super::outputs`]); also used for `ac/<hex>` written through
/// the refs API, which is the same entry.
pub async fn check_entry(state: &crate::State, hash: &str, value: &[u8]) -> Result<(), ApiError> {
    let (result, named) = named_blobs(value, hash)?;
    let digests: Vec<Digest> = named.iter().map(|(_, d)| *d).collect();
    let have = state.store.blobs.has_many(&digests).await?;
    if let Some(((what, digest), _)) = named.iter().zip(have).find(|(_, has)| !has) {
        return Err(ApiError::BadRequest(format!(
            "action result for {hash} names {what} {digest}, which the store lacks \
             (upload outputs before their result); nothing stored"
        )));
    }
    let dirs: Vec<_> = result
        .output_directories
        .iter()
        .map(|d| {
            let digest = |d: &Option<cairn_tree::proto::Digest>| {
                d.as_ref().and_then(|d| Digest::try_from(d).ok())
            };
            (
                d.path.clone(),
                digest(&d.tree_digest),
                digest(&d.root_directory_digest),
            )
        })
        .collect();
    super::outputs::check(&state.store, hash, &dirs).await
}

/// The non-empty blobs an encoded action result names, each with what it
/// is for, and the result; 400 if the bytes are not an `ActionResult`.
fn named_blobs(
    value: &[u8],
    hash: &str,
) -> Result<(ActionResult, Vec<(String, Digest)>), ApiError> {
    let result = ActionResult::decode(value).map_err(|e| {
        ApiError::BadRequest(format!(
            "action result for {hash} is not an encoded ActionResult ({e}); nothing stored"
        ))
    })?;
    let mut named = Vec::new();
    let files = result
        .output_files
        .iter()
        .map(|f| (format!("output file {:?}", f.path), &f.digest));
    let dirs = result.output_directories.iter().flat_map(|d| {
        [
            (
                format!("the tree of output directory {:?}", d.path),
                &d.tree_digest,
            ),
            (
                format!("output directory {:?}", d.path),
                &d.root_directory_digest,
            ),
        ]
    });
    let logs = [
        ("stdout".to_string(), &result.stdout_digest),
        ("stderr".to_string(), &result.stderr_digest),
    ];
    for (what, digest) in files.chain(dirs).chain(logs) {
        let Some(digest) = digest else { continue };
        let digest = Digest::try_from(digest).map_err(|e| {
            ApiError::BadRequest(format!(
                "action result for {hash}: {what} has an invalid digest: {e}; nothing stored"
            ))
        })?;
        if digest.size() > 0 {
            named.push((what, digest));
        }
    }
    Ok((result, named))
}

/// `GET /ac/<hex>`
#[instrument(skip_all, fields(hash = %hash))]
pub async fn get(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    state.auth.check(&headers, &Scope::Read)?;
    let name = ac_ref(&hash)?;
    let found = state.store.refs.get(&name).await?;
    state.metrics.cache_lookup(Cache::Ac, found.is_some());
    Ok(match found {
        Some(v) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            v.value,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

/// `PUT /ac/<hex>`: stores (or replaces) the entry.
#[instrument(skip_all, fields(hash = %hash))]
pub async fn put(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Path(hash): Path<String>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    state.auth.check(&headers, &Scope::Write)?;
    let name = ac_ref(&hash)?;
    let value = read_limited(&state.buffers, body, MAX_REF_SIZE, "action result").await?;
    check_entry(&state, &hash, &value).await?;
    for _ in 0..OVERWRITE_ATTEMPTS {
        let current = state.store.refs.get(&name).await?.map(|v| v.version);
        match state
            .store
            .refs
            .compare_and_swap(&name, current.as_ref(), value.to_vec())
            .await
        {
            Ok(_) => {
                state.hub.publish(name);
                return Ok(StatusCode::OK);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Internal(format!(
        "{name}: lost {OVERWRITE_ATTEMPTS} races in a row"
    )))
}
