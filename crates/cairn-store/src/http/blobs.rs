//! Blobs over `/v1/blobs/…`: batch presence queries, streamed downloads
//! verified as they arrive, streamed uploads verified as they leave.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cairn_digest::Digest;
use futures::{StreamExt, TryStreamExt};
use reqwest::{header, Method, StatusCode};
use tokio_util::io::{ReaderStream, StreamReader};
use tracing::instrument;

use super::{is_not_found, HttpStore, BACKEND};
use crate::blob::{BlobReader, BlobStore, Mismatch, VerifyingReader};
use crate::error::{Result, StoreError};

/// Digests per missing-blobs query (the server accepts about 100k).
const QUERY_BATCH: usize = 10_000;

#[derive(serde::Serialize)]
struct MissingQuery<'a> {
    digests: &'a [Digest],
}

#[derive(serde::Deserialize)]
struct Missing {
    missing: Vec<Digest>,
}

fn blob_path(digest: &Digest) -> String {
    format!("/v1/blobs/{}/{}", digest.hex(), digest.size())
}

impl HttpStore {
    async fn missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let body = serde_json::to_vec(&MissingQuery { digests }).expect("digests serialize");
        let rb = self
            .request(Method::POST, "/v1/blobs/missing")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        let response = self.send(rb, "querying missing blobs").await?;
        if !response.status().is_success() {
            return Err(self.failure("querying missing blobs", response).await);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport("reading missing blobs", &e))?;
        let parsed: Missing = serde_json::from_slice(&bytes).map_err(|e| StoreError::Backend {
            backend: BACKEND,
            message: format!("malformed missing-blobs answer from {}: {e}", self.base),
        })?;
        Ok(parsed.missing)
    }
}

#[async_trait]
impl BlobStore for HttpStore {
    #[instrument(skip_all, fields(count = digests.len()))]
    async fn has_many(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        let mut missing = std::collections::HashSet::new();
        for batch in digests.chunks(QUERY_BATCH) {
            missing.extend(self.missing(batch).await?);
        }
        Ok(digests.iter().map(|d| !missing.contains(d)).collect())
    }

    #[instrument(skip_all, fields(digest = %digest))]
    async fn get(&self, digest: &Digest) -> Result<Option<BlobReader>> {
        let what = format!("getting blob {digest}");
        let response = self
            .send(self.request(Method::GET, &blob_path(digest)), &what)
            .await?;
        match response.status() {
            s if is_not_found(s) => Ok(None),
            StatusCode::OK => {
                let stream = response.bytes_stream().map_err(std::io::Error::other);
                let reader = StreamReader::new(stream);
                Ok(Some(Box::pin(VerifyingReader::new(reader, *digest))))
            }
            _ => Err(self.failure(&what, response).await),
        }
    }

    /// Streams `data` up, hashing it on the way: bytes that do not match
    /// are caught here as well as by the server, and the upload is cut off
    /// before its end so the server stores nothing.
    #[instrument(skip_all, fields(digest = %digest))]
    async fn put(&self, digest: &Digest, data: BlobReader) -> Result<()> {
        let what = format!("putting blob {digest}");
        let mismatch: Arc<Mutex<Option<Digest>>> = Arc::default();
        let seen = mismatch.clone();
        let stream = ReaderStream::new(VerifyingReader::new(data, *digest)).inspect_err(move |e| {
            if let Some(m) = e.get_ref().and_then(|i| i.downcast_ref::<Mismatch>()) {
                *seen.lock().unwrap() = Some(m.actual);
            }
        });
        let rb = self
            .request(Method::PUT, &blob_path(digest))
            .header(header::CONTENT_LENGTH, digest.size())
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream.boxed()));
        let sent = rb.send().await;
        if let Some(actual) = *mismatch.lock().unwrap() {
            return Err(StoreError::Corrupt {
                expected: *digest,
                actual,
            });
        }
        let response = sent.map_err(|e| self.transport(&what, &e))?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(self.failure(&what, response).await)
    }
}
