//! The routes, one file per endpoint group, and the input checks they
//! share. Every path parameter is validated here before it reaches the
//! store: hashes must be 64 lowercase hex digits, ref names must pass
//! [`RefName::new`], prefixes may not contain `.`/`..`/empty segments.

pub(crate) mod ac;
mod assemble;
mod blobs;
mod cas;
mod closures;
mod health;
mod outputs;
mod refs;
mod watch;

use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use cairn_digest::Digest;
use cairn_store::RefName;

use crate::error::ApiError;
use crate::State;

/// All routes, with metrics around each.
pub fn router(state: State) -> Router {
    Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/v1/dashboard", get(crate::dashboard::json))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/cas/{hash}", get(cas::get).head(cas::head).put(cas::put))
        .route("/ac/{hash}", get(ac::get).put(ac::put))
        .route("/v1/blobs/missing", post(blobs::missing))
        .route("/v1/blobs/batch", post(blobs::batch))
        .route("/v1/blobs/closures", post(closures::closures))
        .route(
            "/v1/blobs/{hash}/{size}",
            get(blobs::get).head(blobs::head).put(blobs::put),
        )
        .route("/v1/assemble/{hash}/{size}", post(assemble::assemble))
        .route("/v1/refs", get(refs::list))
        .route(
            "/v1/refs/{*name}",
            get(refs::get).put(refs::put).delete(refs::delete),
        )
        .route("/v1/watch", get(watch::watch))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .layer(axum::middleware::map_response(no_sniff))
        .with_state(state)
}

/// Every response is taken as the type it says it is: a browser never
/// guesses a blob or a ref value served as `application/octet-stream` to be
/// HTML or script.
async fn no_sniff(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    response
}

/// A hash path segment: exactly 64 lowercase hex digits.
fn parse_hash(text: &str) -> Result<&str, ApiError> {
    let ok = text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then_some(text).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "{text:?} is not a sha256 hash (64 lowercase hex digits)"
        ))
    })
}

/// A digest from a hash and a size path segment.
fn parse_digest(hash: &str, size: &str) -> Result<Digest, ApiError> {
    let hash = parse_hash(hash)?;
    let size: u64 = size
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("size {size:?} is not a number")))?;
    Digest::from_hex(hash, size).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// A ref name from the path.
fn parse_ref_name(text: &str) -> Result<RefName, ApiError> {
    RefName::new(text).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// A ref-name prefix: like a ref name, but may be empty or end in `/` or
/// in part of a segment.
fn parse_prefix(text: &str) -> Result<&str, ApiError> {
    if text.is_empty() {
        return Ok(text);
    }
    let bad = || ApiError::BadRequest(format!("invalid ref prefix {text:?}"));
    let segments: Vec<&str> = text.split('/').collect();
    let (last, whole) = segments.split_last().expect("split yields one or more");
    let segment_ok = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    for s in whole {
        if s.is_empty() || *s == "." || *s == ".." || !segment_ok(s) {
            return Err(bad());
        }
    }
    if !segment_ok(last) || text.len() > 512 {
        return Err(bad());
    }
    Ok(text)
}

/// The value of a header, if present and text.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        for ok in ["", "a", "a/", "a/b", "channels/we", "a/."] {
            assert!(parse_prefix(ok).is_ok(), "{ok:?}");
        }
        for bad in ["/", "/a", "../", "a/../b", "a//b", "a b", "./x"] {
            assert!(parse_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hashes() {
        assert!(parse_hash(&"ab".repeat(32)).is_ok());
        for bad in ["", "..", &"AB".repeat(32), &"ab".repeat(33)] {
            assert!(parse_hash(bad).is_err(), "{bad:?}");
        }
    }
}
