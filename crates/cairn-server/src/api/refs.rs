//! cairn's refs API: `GET/PUT/DELETE /v1/refs/<name>` and
//! `GET /v1/refs?prefix=…&limit=…&after=…`.
//!
//! A list is paged: at most `limit` names (default and most
//! [`MAX_PAGE`]; a larger `limit` is taken as that), sorted, those after
//! the ref name `after`; the answer is `{"refs": [...], "next": "<name>"}`
//! with `next` present when more may follow, to be sent back as `after`.
//!
//! HTTP's own conditional requests carry the compare-and-swap: a read
//! returns the version as an `ETag`; a write names the version it expects
//! with `If-Match: "<version>"`, or `If-None-Match: *` to create. A lost
//! race is 412. A read with `If-None-Match: "<version>"` of a ref still
//! at that version is 304 with no body (what a poller sends). A write with neither header is refused with 428 rather
//! than done unconditionally: every cairn ref write is a CAS. An
//! action-cache entry `ac/<hex>` is checked as `PUT /ac/<hex>` checks it.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_store::refs::MAX_REF_SIZE;
use cairn_store::{RefName, Version};
use serde::{Deserialize, Serialize};
use tracing::instrument;

use super::{header, parse_prefix, parse_ref_name};
use crate::auth::scope_for_ref;
use crate::body::read_limited;
use crate::error::ApiError;
use crate::tokens::Scope;

/// `?prefix=` of a list or watch.
#[derive(Deserialize)]
pub struct PrefixQuery {
    #[serde(default)]
    prefix: String,
}

/// The most names one list answer holds (as S3's `max-keys`).
pub const MAX_PAGE: usize = 1000;

/// `?prefix=&limit=&after=` of a list.
#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    prefix: String,
    limit: Option<usize>,
    after: Option<String>,
}

/// The answer to a list: one page, and where the next starts.
#[derive(Serialize)]
pub struct RefList {
    refs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// What a write expects to find.
enum Expect {
    Absent,
    At(Version),
}

fn etag(version: &Version) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("versions are header-safe")
}

fn unquote(tag: &str) -> Result<Version, ApiError> {
    tag.trim()
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|t| !t.contains('"'))
        .map(|t| Version(t.to_string()))
        .ok_or_else(|| ApiError::BadRequest(format!("If-Match {tag:?} is not a quoted ETag")))
}

fn expectation(headers: &HeaderMap, allow_create: bool) -> Result<Expect, ApiError> {
    if let Some(tag) = header(headers, header::IF_MATCH.as_str()) {
        return unquote(tag).map(Expect::At);
    }
    match header(headers, header::IF_NONE_MATCH.as_str()) {
        Some("*") if allow_create => Ok(Expect::Absent),
        _ => Err(ApiError::PreconditionRequired(if allow_create {
            "a ref write needs If-Match: \"<version>\" or If-None-Match: *".into()
        } else {
            "a ref delete needs If-Match: \"<version>\"".into()
        })),
    }
}

/// `GET /v1/refs/<name>`: the value, with its version as ETag.
#[instrument(skip_all, fields(name = %name))]
pub async fn get(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = parse_ref_name(&name)?;
    state.auth.check(&headers, &Scope::Read)?;
    let v = state
        .store
        .refs
        .get(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("ref {name} does not exist")))?;
    // A poller names the version it has; unchanged, it gets no body.
    let unchanged = header(&headers, header::IF_NONE_MATCH.as_str())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag(&v.version)));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        v.value.into_response()
    };
    response
        .headers_mut()
        .insert(header::ETAG, etag(&v.version));
    Ok(response)
}

/// `PUT /v1/refs/<name>`: compare-and-swap; the new version is the ETag.
#[instrument(skip_all, fields(name = %name))]
pub async fn put(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = parse_ref_name(&name)?;
    state.auth.check(&headers, &scope_for_ref(&name))?;
    let expected = expectation(&headers, true)?;
    let value = read_limited(&state.buffers, body, MAX_REF_SIZE, &format!("ref {name}")).await?;
    if let Some(action) = crate::auth::action_cache_hash(&name) {
        super::ac::check_entry(&state, action, &value).await?;
    }
    let expected = match &expected {
        Expect::Absent => None,
        Expect::At(v) => Some(v),
    };
    let version = state
        .store
        .refs
        .compare_and_swap(&name, expected, value.to_vec())
        .await?;
    state.hub.publish(name);
    let status = match expected {
        None => StatusCode::CREATED,
        Some(_) => StatusCode::OK,
    };
    Ok((status, [(header::ETAG, etag(&version))]).into_response())
}

/// `DELETE /v1/refs/<name>` with `If-Match`.
#[instrument(skip_all, fields(name = %name))]
pub async fn delete(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name: RefName = parse_ref_name(&name)?;
    state.auth.check(&headers, &scope_for_ref(&name))?;
    let Expect::At(expected) = expectation(&headers, false)? else {
        unreachable!("creates are not allowed here");
    };
    state.store.refs.delete(&name, &expected).await?;
    state.hub.publish(name);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/refs?prefix=…&limit=…&after=…`: a page of the names under a
/// prefix, sorted.
#[instrument(skip_all, fields(prefix = %query.prefix))]
pub async fn list(
    State(state): State<crate::State>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<RefList>, ApiError> {
    let prefix = parse_prefix(&query.prefix)?;
    let after = query.after.as_deref().map(parse_ref_name).transpose()?;
    let limit = match query.limit {
        Some(0) => {
            return Err(ApiError::BadRequest(
                "a list's limit must be at least 1".into(),
            ))
        }
        Some(n) => n.min(MAX_PAGE),
        None => MAX_PAGE,
    };
    state.auth.check(&headers, &Scope::Read)?;
    let mut names = state
        .store
        .refs
        .list_page(prefix, after.as_ref(), limit + 1)
        .await?;
    let more = names.len() > limit;
    names.truncate(limit);
    Ok(Json(RefList {
        next: more.then(|| names.last().expect("a full page").to_string()),
        refs: names.into_iter().map(|n| n.to_string()).collect(),
    }))
}

impl PrefixQuery {
    /// The validated prefix.
    pub fn prefix(&self) -> Result<&str, ApiError> {
        parse_prefix(&self.prefix)
    }
}
