//! The `http(s)://` backend: a store served by `cairn server`.
//!
//! It speaks the server's cairn API (`/v1/…`), not Bazel's paths: blobs by
//! full digest (so every transfer is verified on both ends), refs with
//! ETags and `If-Match` (so compare-and-swap is the server's, done under
//! its store's own lock), and a server-sent-events watch that resumes
//! with `Last-Event-ID` after a disconnect (see `watch.rs`).
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
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::error::{Result, StoreError};

const BACKEND: &str = "http";

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

impl HttpStore {
    /// A client for the server at `url` (`http(s)://host:port[/path]`),
    /// sending `token` as a bearer token when given.
    ///
    /// `https://` servers are checked against the usual public roots plus
    /// the PEM certificates in the file named by [`CA_CERT_ENV`], if set
    /// (a private CA, or a self-signed server certificate).
    pub fn new(url: &str, token: Option<String>) -> Result<Self> {
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(path) = std::env::var_os(CA_CERT_ENV).filter(|p| !p.is_empty()) {
            for cert in read_ca_certs(std::path::Path::new(&path))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| StoreError::Backend {
            backend: BACKEND,
            message: format!("building an HTTP client: {e}"),
        })?;
        Ok(Self {
            client,
            base: url.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.base
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
        rb.send().await.map_err(|e| self.transport(what, &e))
    }

    fn transport(&self, what: &str, e: &reqwest::Error) -> StoreError {
        let mut message = format!("{what} at {}: {e}", self.base);
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        if self.base.starts_with("https://") && message.contains("certificate") {
            message.push_str(&format!(
                " (to trust a private CA or self-signed server, set {CA_CERT_ENV}=PEM)"
            ));
        }
        StoreError::Backend {
            backend: BACKEND,
            message,
        }
    }

    /// The error for an unexpected answer: status and the server's message.
    async fn failure(&self, what: &str, response: Response) -> StoreError {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_string))
            .unwrap_or(text);
        let hint = if status == StatusCode::UNAUTHORIZED {
            " (give a token with --token or CAIRN_TOKEN)"
        } else {
            ""
        };
        StoreError::Backend {
            backend: BACKEND,
            message: match message.trim() {
                "" => format!("{what} at {}: {status}{hint}", self.base),
                message => format!("{what} at {}: {status}: {message}{hint}", self.base),
            },
        }
    }
}

/// The environment variable naming a PEM file of extra CA certificates
/// for `https://` store URLs.
pub const CA_CERT_ENV: &str = "CAIRN_CA_CERT";

fn read_ca_certs(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>> {
    let fail = |message: String| StoreError::Backend {
        backend: BACKEND,
        message: format!("{CA_CERT_ENV}={}: {message}", path.display()),
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no PEM CERTIFICATE block in the file".into()));
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
