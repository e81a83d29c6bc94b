//! Blobs over `/v1/blobs/…`: batch presence queries, streamed downloads
//! verified as they arrive, streamed uploads verified as they leave, many
//! small uploads in one `POST /v1/blobs/batch` ([`crate::blob::batch`]);
//! which subtrees the server holds whole (`POST /v1/blobs/closures`, see
//! [`crate::closure`]);
//! and assembly from stored chunks over `POST /v1/assemble/<hex>/<size>`, so a
//! large file whose chunks were just uploaded need not be uploaded whole.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cairn_digest::Digest;
use futures::{StreamExt, TryStreamExt};
use reqwest::{header, Method, StatusCode};
use tokio_util::io::{ReaderStream, StreamReader};
use tracing::instrument;

use super::{is_not_found, HttpStore};
use crate::assemble::{check, require_chunks, MAX_CHUNKS};
use crate::blob::batch::{self, MAX_BATCH_BYTES};
use crate::blob::{Assembled, BlobReader, BlobStore, Mismatch, VerifyingReader};
use crate::closure::MAX_ROOTS;
use crate::error::{ErrorKind, Result, StoreError};
use crate::reach::Kind;

/// Digests per missing-blobs query (the server accepts about 100k).
const QUERY_BATCH: usize = 10_000;

#[derive(serde::Serialize)]
struct MissingQuery<'a> {
    digests: &'a [Digest],
}

/// `POST /v1/assemble/<hex>/<size>` request body.
#[derive(serde::Serialize)]
struct AssembleRequest<'a> {
    chunks: &'a [Digest],
}

#[derive(serde::Deserialize)]
struct Missing {
    missing: Vec<Digest>,
}

/// One root of a `POST /v1/blobs/closures` question.
#[derive(serde::Serialize)]
struct ClosureRoot {
    digest: Digest,
    kind: Kind,
}

#[derive(serde::Serialize)]
struct ClosuresQuery {
    roots: Vec<ClosureRoot>,
}

#[derive(serde::Deserialize)]
struct Complete {
    complete: Vec<bool>,
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
        let bytes = self
            .body_within(response, super::MAX_ANSWER, "reading missing blobs")
            .await?;
        let parsed: Missing = serde_json::from_slice(&bytes)
            .map_err(|e| self.malformed("querying missing blobs", e.to_string()))?;
        Ok(parsed.missing)
    }

    /// Asks which of `roots` (at most [`MAX_ROOTS`]) the server holds
    /// whole. `None`: the server has no such route (an older server).
    async fn closures(&self, roots: &[(Digest, Kind)]) -> Result<Option<Vec<bool>>> {
        let what = format!("asking about the closures of {} blobs", roots.len());
        let query = ClosuresQuery {
            roots: roots
                .iter()
                .map(|&(digest, kind)| ClosureRoot { digest, kind })
                .collect(),
        };
        let body = serde_json::to_vec(&query).expect("digests serialize");
        let rb = self
            .request(Method::POST, "/v1/blobs/closures")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        let response = self.send(rb, &what).await?;
        match response.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => return Ok(None),
            _ => return Err(self.failure(&what, response).await),
        }
        let bytes = self
            .body_within(response, super::MAX_ANSWER, "reading the closures answer")
            .await?;
        let malformed = |reason: String| self.malformed(&what, reason);
        let parsed: Complete =
            serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        if parsed.complete.len() != roots.len() {
            return Err(malformed(format!(
                "{} answers for {} roots",
                parsed.complete.len(),
                roots.len()
            )));
        }
        Ok(Some(parsed.complete))
    }

    /// Sends one batch that fits the server's bounds. `false`: the server
    /// has no batch route (an older server: 404 or 405).
    async fn put_batch(&self, blobs: &[(Digest, Vec<u8>)]) -> Result<bool> {
        let what = format!("putting a batch of {} blobs", blobs.len());
        let body = batch::encode(blobs.iter().map(|(d, b)| (d, b.as_slice())));
        let rb = self
            .request(Method::POST, "/v1/blobs/batch")
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        let response = self.send(rb, &what).await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Ok(false),
            _ => Err(self.failure(&what, response).await),
        }
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

    #[instrument(skip_all, fields(count = roots.len()))]
    async fn has_closures(&self, roots: &[(Digest, Kind)]) -> Result<Option<Vec<bool>>> {
        let mut answer = Vec::with_capacity(roots.len());
        for batch in roots.chunks(MAX_ROOTS) {
            match self.closures(batch).await? {
                Some(part) => answer.extend(part),
                None => return Ok(None),
            }
        }
        Ok(Some(answer))
    }

    /// `HEAD /cas/<hex>` (Bazel's path, which names a blob by hash alone):
    /// the server answers with the blob's length.
    #[instrument(skip_all)]
    async fn lookup(&self, hash: &[u8; 32]) -> Result<Option<Digest>> {
        let probe = Digest::from_parts(*hash, 0);
        let what = format!("looking up blob sha256:{}", probe.hex());
        let path = format!("/cas/{}", probe.hex());
        let response = self.send(self.request(Method::HEAD, &path), &what).await?;
        match response.status() {
            s if is_not_found(s) => Ok(None),
            s if s.is_success() => {
                let size = response
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .ok_or_else(|| self.malformed(&what, "no Content-Length".into()))?;
                Ok(Some(Digest::from_parts(*hash, size)))
            }
            _ => Err(self.failure(&what, response).await),
        }
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
        let response = sent.map_err(|e| self.transport(&what, e))?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(self.failure(&what, response).await)
    }

    /// Checks every blob here first (a mismatch is refused before anything
    /// is sent), then sends them in batches the server accepts, one request
    /// each. A blob too large for a batch goes alone through
    /// [`put`](Self::put), and so does every blob of a batch a server
    /// without the batch route refused.
    #[instrument(skip_all, fields(count = blobs.len()))]
    async fn put_many(&self, blobs: Vec<(Digest, Vec<u8>)>) -> Result<()> {
        for (digest, bytes) in &blobs {
            if !digest.matches(bytes) {
                return Err(StoreError::Corrupt {
                    expected: *digest,
                    actual: Digest::of(bytes),
                });
            }
        }
        let sizes: Vec<u64> = blobs.iter().map(|(d, _)| d.size()).collect();
        let mut blobs = blobs.into_iter();
        for run in batch::split(&sizes) {
            let part: Vec<(Digest, Vec<u8>)> = blobs.by_ref().take(run.len()).collect();
            let batched = part.len() > 1 || sizes[run.start] <= MAX_BATCH_BYTES;
            if batched && self.put_batch(&part).await? {
                continue;
            }
            for (digest, bytes) in part {
                self.put(&digest, Box::pin(std::io::Cursor::new(bytes)))
                    .await?;
            }
        }
        Ok(())
    }

    /// Asks the server to assemble `file` from chunks it holds. A server
    /// without the route (404, 405) and a list too long to send are
    /// [`Assembled::Unsupported`]; a 409 (a chunk missing there) becomes
    /// [`StoreError::NotFound`] for the first chunk the server lacks, and a
    /// 400 (the chunks do not hash to the file) is [`ErrorKind::Corrupt`].
    #[instrument(skip_all, fields(digest = %file, chunks = chunks.len()))]
    async fn assemble(&self, file: &Digest, chunks: &[Digest]) -> Result<Assembled> {
        if chunks.len() > MAX_CHUNKS {
            return Ok(Assembled::Unsupported);
        }
        check(file, chunks)?;
        let what = format!("assembling blob {file} from {} chunks", chunks.len());
        let body = serde_json::to_vec(&AssembleRequest { chunks }).expect("digests serialize");
        let rb = self
            .request(
                Method::POST,
                &format!("/v1/assemble/{}/{}", file.hex(), file.size()),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        let response = self.send(rb, &what).await?;
        match response.status() {
            s if s.is_success() => Ok(Assembled::Stored),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Ok(Assembled::Unsupported),
            StatusCode::CONFLICT => {
                let failure = self.failure(&what, response).await;
                require_chunks(self, chunks).await?;
                Err(failure)
            }
            // The list was checked here, so the server's 400 can only say
            // that the chunks do not hash to the file.
            StatusCode::BAD_REQUEST => {
                let mut failure = self.failure_of(&what, response).await;
                failure.kind = ErrorKind::Corrupt;
                Err(failure.into())
            }
            _ => Err(self.failure(&what, response).await),
        }
    }
}
