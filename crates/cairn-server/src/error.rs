//! What handlers fail with, and how that reaches the client.
//!
//! Client mistakes (bad digest, bad ref name, missing token, lost race)
//! are answered with their status and a one-line message in JSON
//! (`{"error": "…"}`). Server faults are logged here with their cause and
//! answered with a generic 500 message (503 when the store behind the
//! server cannot be reached, so clients retry), so internal paths and OS
//! errors never leak to clients. Store errors map to statuses by their
//! [`ErrorKind`], never by their text.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_store::{ErrorKind, StoreError};

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token, or one the server does not know.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the token lacks the scope.
    #[error("{0}")]
    Forbidden(String),
    /// 404: nothing there.
    #[error("{0}")]
    NotFound(String),
    /// 409: the request needs something the store lacks (a chunk to
    /// assemble from).
    #[error("{0}")]
    Conflict(String),
    /// 411: a Bazel CAS upload without `Content-Length`.
    #[error("PUT /cas needs a Content-Length header")]
    LengthRequired,
    /// 428: a ref write without `If-Match` or `If-None-Match: *`.
    #[error("{0}")]
    PreconditionRequired(String),
    /// 413: a body larger than the route accepts.
    #[error("{0}")]
    TooLarge(String),
    /// 408: the request body stalled or crawled and was cut off.
    #[error("{0}")]
    Timeout(String),
    /// 503: the server holds as many buffered request bodies as it may;
    /// the client should retry.
    #[error("{0}")]
    Busy(String),
    /// 507: the store's file system has no room for the upload.
    #[error("{0}")]
    InsufficientStorage(String),
    /// 500 with a generic message; the text is only logged.
    #[error("{0}")]
    Internal(String),
    /// A store error, mapped to the status its kind stands for.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Self::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Store(e) => store_status(e),
        }
    }
}

/// The status a store error stands for, by its kind.
///
/// What the client sent decides 400, 404, 412 and 413. A store that
/// stands behind this server and cannot be reached (S3 down) is 503, so a
/// client retries; its own credentials refused (401/403 from S3) are the
/// server's misconfiguration, not the client's: 500, logged. Corrupt
/// bytes are 400 when the client sent them (an upload that does not hash
/// to its digest) and 500 when they are the store's own (a value that
/// does not decode).
fn store_status(e: &StoreError) -> StatusCode {
    match (e.kind(), e) {
        (_, StoreError::RefTooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        (ErrorKind::Corrupt, StoreError::Corrupt { .. }) => StatusCode::BAD_REQUEST,
        (ErrorKind::InvalidRequest, _) => StatusCode::BAD_REQUEST,
        (ErrorKind::NotFound, _) => StatusCode::NOT_FOUND,
        (ErrorKind::Conflict, _) => StatusCode::PRECONDITION_FAILED,
        (ErrorKind::Unavailable, _) => StatusCode::SERVICE_UNAVAILABLE,
        (
            ErrorKind::Corrupt | ErrorKind::Unauthorized | ErrorKind::Forbidden | ErrorKind::Io,
            _,
        ) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let busy = matches!(self, Self::Busy(_));
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
            "internal server error; the cause is in the server's log".to_string()
        } else if status == StatusCode::SERVICE_UNAVAILABLE && !matches!(self, Self::Busy(_)) {
            tracing::warn!(error = %self, "the store is unavailable");
            "the store behind this server is unavailable; try again later".to_string()
        } else {
            tracing::debug!(%status, error = %self, "request refused");
            self.to_string()
        };
        let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
        if busy {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, "1".parse().unwrap());
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
        }
        response
    }
}
