//! The `http(s)://` backend: a store served by `cairn server`.
//!
//! It speaks the server's cairn API (`/v1/…`), not Bazel's paths: blobs by
//! full digest (so every transfer is verified on both ends), refs with
//! ETags and `If-Match` (so compare-and-swap is the server's, done under
//! its store's own lock), and a server-sent-events watch that resumes
//! with `Last-Event-ID` after a disconnect (see `watch.rs`).
//!
//! Every answer read whole is read within a bound (a ref within
//! [`MAX_REF_SIZE`](crate::refs::MAX_REF_SIZE), a list or query answer
//! within [`MAX_ANSWER`], an error's message within [`MAX_ERROR_BODY`]), so
//! a hostile or broken server sending an endless body gets a one-line
//! error naming what was read instead of the client's memory.
//!
//! Durability is the server's job: it makes each uploaded blob durable
//! before answering, so [`BlobStore::flush`] here has nothing to do.
//!
//! [`BlobStore::flush`]: crate::BlobStore::flush

mod blobs;
mod refs;
mod sse;
mod watch;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::error::{Cause, ErrorKind, RemoteError, Result, StoreError};

/// A store behind a `cairn server`.
#[derive(Clone)]
pub struct HttpStore {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStore")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The largest answer to a list or query (a ref list, missing blobs,
/// closures): about two million ref names.
pub const MAX_ANSWER: usize = 256 << 20;

/// How much of an error answer's body is read for its message.
pub const MAX_ERROR_BODY: usize = 64 << 10;

/// The longest a request may wait for the next bytes of its answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

impl HttpStore {
    /// A client for the server at `url` (`http(s)://host:port[/path]`),
    /// sending `token` as a bearer token when given. `https://` servers are
    /// checked against the usual public roots plus the PEM certificates in
    /// `ca_certs` (a private CA, or a self-signed server certificate).
    ///
    /// Nothing is sent yet: [`HttpStore::probe`] checks the server.
    pub fn new(url: &str, token: Option<String>, ca_certs: &[PathBuf]) -> Result<Self> {
        crate::url::refuse_credentials(url)?;
        let base = url.trim_end_matches('/').to_string();
        // A server that stops answering mid-request (a host cut off the
        // network, a peer that died without a reset) fails the request
        // after READ_TIMEOUT of silence instead of hanging until TCP gives
        // up; keepalive probes find a dead idle connection. The server's
        // watch stream sends a comment every 15 s, well inside the limit.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(READ_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(15))
            // A cairn server never redirects: one that does is not
            // followed anywhere with the token and the request's body.
            .redirect(reqwest::redirect::Policy::none());
        for path in ca_certs {
            for cert in read_ca_certs(&base, path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| {
            StoreError::from(RemoteError {
                kind: ErrorKind::InvalidRequest,
                store: base.clone(),
                action: "building an HTTP client".into(),
                detail: "the TLS settings were refused".into(),
                source: Some(e.into()),
            })
        })?;
        Ok(Self {
            client,
            base,
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Checks that the server is a `cairn server` that answers
    /// (`/healthz`), and that it accepts this client's token for reading
    /// (an empty missing-blobs query, which needs the `read` scope), so
    /// that a wrong URL or token fails here, not halfway through a command.
    pub async fn probe(&self) -> Result<()> {
        let what = "checking the server's health";
        let rb = self.client.get(format!("{}/healthz", self.base));
        let response = self.send(rb.timeout(PROBE_TIMEOUT), what).await?;
        if !response.status().is_success() {
            let mut error = self.failure_of(what, response).await;
            error
                .detail
                .push_str(" (is this the address of a `cairn server`?)");
            if error.kind == ErrorKind::NotFound {
                error.kind = ErrorKind::InvalidRequest;
            }
            return Err(error.into());
        }
        let what = match &self.token {
            Some(_) => "checking the token for reading",
            None => "reading without a token",
        };
        let rb = self
            .request(Method::POST, "/v1/blobs/missing")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(r#"{"digests": []}"#)
            .timeout(PROBE_TIMEOUT);
        let response = self.send(rb, what).await?;
        if !response.status().is_success() {
            return Err(self.failure(what, response).await);
        }
        Ok(())
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Sends a request; a transport failure becomes a backend error.
    async fn send(&self, rb: RequestBuilder, what: &str) -> Result<Response> {
        rb.send().await.map_err(|e| self.transport(what, e))
    }

    /// The error for a request that got no answer, its kind read from the
    /// `reqwest` error and the TLS error inside it, if any
    /// ([`crate::transport`]).
    fn transport(&self, what: &str, e: reqwest::Error) -> StoreError {
        let (kind, detail) = crate::transport::classify(&e);
        StoreError::from(RemoteError {
            kind,
            store: self.base.clone(),
            action: what.into(),
            detail,
            source: Some(e.into()),
        })
    }

    /// The error for an unexpected answer: its status and the server's
    /// message (the `error` of a JSON body, or a short plain-text body;
    /// never an HTML page), and for a 401 how to give a token.
    async fn failure_of(&self, what: &str, response: Response) -> RemoteError {
        let status = response.status();
        let text =
            String::from_utf8_lossy(&first_bytes(response, MAX_ERROR_BODY).await).into_owned();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_string))
            .or_else(|| {
                let line = text.trim();
                let plain = !line.is_empty() && line.len() <= 200 && !line.contains(['<', '\n']);
                plain.then(|| line.to_string())
            });
        let hint = if status == StatusCode::UNAUTHORIZED {
            " (give a token with --token-file or CAIRN_TOKEN)"
        } else {
            ""
        };
        let detail = match message {
            Some(m) => format!("{status}: {m}{hint}"),
            None => format!("{status}{hint}"),
        };
        RemoteError {
            kind: status_kind(status),
            store: self.base.clone(),
            action: what.into(),
            detail,
            source: None,
        }
    }

    /// [`failure_of`](Self::failure_of) as a [`StoreError`].
    async fn failure(&self, what: &str, response: Response) -> StoreError {
        self.failure_of(what, response).await.into()
    }

    /// The body of `response`, refused as malformed past `limit` bytes
    /// (before any is read when its `Content-Length` says so).
    async fn body_within(
        &self,
        mut response: Response,
        limit: usize,
        what: &str,
    ) -> Result<Vec<u8>> {
        let too_long = || self.malformed(what, format!("more than {limit} bytes"));
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_long());
        }
        let mut out = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(what, e))?
        {
            if out.len() + chunk.len() > limit {
                return Err(too_long());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The error for an answer that does not decode.
    fn malformed(&self, what: &str, reason: String) -> StoreError {
        StoreError::from(RemoteError {
            kind: ErrorKind::Corrupt,
            store: self.base.clone(),
            action: what.into(),
            detail: format!("malformed answer: {reason}"),
            source: None,
        })
    }
}

/// How long each request of [`HttpStore::probe`] may take: a server that
/// accepts connections but never answers fails the probe, not the command
/// an hour later.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The kind of failure an HTTP status stands for.
pub fn status_kind(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 | 410 => ErrorKind::NotFound,
        409 | 412 => ErrorKind::Conflict,
        408 | 429 => ErrorKind::Unavailable,
        // 3xx: a redirect, which a cairn server never sends and the
        // client does not follow.
        300..=499 => ErrorKind::InvalidRequest,
        _ => ErrorKind::Unavailable,
    }
}

/// The environment variable naming a PEM file of extra CA certificates
/// for `https://` store URLs (read by the command line, which passes the
/// file in [`OpenOptions::ca_certs`](crate::OpenOptions::ca_certs)).
pub const CA_CERT_ENV: &str = "CAIRN_CA_CERT";

/// Up to `limit` bytes of an answer's body, and whatever could be read
/// before an error (an error answer's message is best effort).
async fn first_bytes(mut response: Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() == limit {
            break;
        }
    }
    out
}

fn read_ca_certs(store: &str, path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let fail = |detail: String, source: Option<Cause>| {
        StoreError::from(RemoteError {
            kind: ErrorKind::InvalidRequest,
            store: store.into(),
            action: format!("reading CA certificates from {}", path.display()),
            detail,
            source,
        })
    };
    let pem =
        std::fs::read(path).map_err(|e| fail("cannot read the file".into(), Some(e.into())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| fail("not PEM certificates".into(), Some(e.into())))?;
    if certs.is_empty() {
        return Err(fail("no PEM CERTIFICATE block in the file".into(), None));
    }
    Ok(certs)
}

/// Whether a status is "not there".
fn is_not_found(status: StatusCode) -> bool {
    status == StatusCode::NOT_FOUND
}

impl HttpStore {
    /// This server as a [`Store`](crate::Store) (blobs and refs both).
    pub fn into_store(self) -> crate::Store {
        let shared = std::sync::Arc::new(self);
        crate::Store {
            blobs: shared.clone(),
            refs: shared,
            local: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_their_kinds() {
        let cases = [
            (401, ErrorKind::Unauthorized),
            (403, ErrorKind::Forbidden),
            (404, ErrorKind::NotFound),
            (409, ErrorKind::Conflict),
            (412, ErrorKind::Conflict),
            (400, ErrorKind::InvalidRequest),
            (413, ErrorKind::InvalidRequest),
            (422, ErrorKind::InvalidRequest),
            (429, ErrorKind::Unavailable),
            (500, ErrorKind::Unavailable),
            (502, ErrorKind::Unavailable),
            (503, ErrorKind::Unavailable),
        ];
        for (code, kind) in cases {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(status_kind(status), kind, "{code}");
        }
    }
}
