//! Request and response bodies: streaming blobs in and out, and reading
//! small bodies (refs, JSON) with a size limit.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_store::BlobReader;
use futures::{StreamExt, TryStreamExt};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::error::ApiError;

/// A request body as a blob stream, and a flag that is set if the client
/// broke off the upload (so the handler can tell that from a bad digest).
pub fn upload(body: Body) -> (BlobReader, Arc<AtomicBool>) {
    let broken = Arc::new(AtomicBool::new(false));
    let flag = broken.clone();
    let stream = body.into_data_stream().map_err(move |e| {
        flag.store(true, Ordering::SeqCst);
        io::Error::other(e)
    });
    (Box::pin(StreamReader::new(stream)), broken)
}

/// The error for a failed upload, preferring "interrupted" when the body
/// itself broke off.
pub fn upload_error(e: cairn_store::StoreError, broken: &AtomicBool) -> ApiError {
    if broken.load(Ordering::SeqCst) {
        return ApiError::BadRequest("upload interrupted; nothing stored".into());
    }
    e.into()
}

/// Space an upload must leave free on a local store's file system, for
/// refs, other uploads and the rest of the machine.
pub const SPACE_RESERVE: u64 = 256 << 20;

/// The bytes uploads in flight have declared: each reserves its size
/// until it ends, however it ends, so many uploads each under the free
/// space cannot together overfill the disk.
#[derive(Debug, Default)]
pub struct Room {
    reserved: Arc<std::sync::Mutex<u64>>,
}

/// An upload's claim on the free space, given back when dropped: when the
/// upload is stored, refused, or its client goes away (the handler's
/// future is dropped with it).
#[derive(Debug)]
pub struct Reservation {
    reserved: Arc<std::sync::Mutex<u64>>,
    size: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.reserved.lock().expect("not poisoned");
        *reserved = reserved.saturating_sub(self.size);
    }
}

impl Room {
    /// Reserves `size` bytes for an upload to a local store, or refuses
    /// it (507) before its body is read when the file system's free
    /// space, less what uploads in flight reserved and
    /// [`SPACE_RESERVE`], has no room for it: a client declaring a
    /// petabyte, or many declaring a little each, would otherwise fill the
    /// disk until the writes fail, taking the room every other writer
    /// needs with them. Other backends bound themselves (`None`).
    ///
    /// The reservation is held for the whole upload, while its bytes
    /// already lower the free space: an upload in flight is counted up to
    /// twice, which errs on the side of refusing.
    pub fn reserve(
        &self,
        store: &cairn_store::Store,
        size: u64,
    ) -> Result<Option<Reservation>, ApiError> {
        let Some(fs) = &store.local else {
            return Ok(None);
        };
        let free = match free_bytes(fs.root()) {
            Ok(free) => free,
            Err(e) => {
                tracing::warn!("checking free space under {}: {e}", fs.root().display());
                return Ok(None);
            }
        };
        let mut reserved = self.reserved.lock().expect("not poisoned");
        let needed = size.saturating_add(SPACE_RESERVE).saturating_add(*reserved);
        if needed > free {
            let held = *reserved;
            tracing::warn!(
                "refusing an upload of {size} bytes: {free} bytes free, {held} reserved by uploads in flight"
            );
            return Err(ApiError::InsufficientStorage(format!(
                "an upload of {size} bytes does not fit: the store has {free} bytes free, \
                 {held} of them reserved by uploads in progress, and keeps {SPACE_RESERVE} \
                 in reserve; nothing stored"
            )));
        }
        *reserved += size;
        Ok(Some(Reservation {
            reserved: self.reserved.clone(),
            size,
        }))
    }
}

/// Bytes an unprivileged writer may still use on the file system of `path`.
fn free_bytes(path: &std::path::Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Reads a whole body of at most `limit` bytes (413 beyond).
pub async fn read_limited(body: Body, limit: usize, what: &str) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::BadRequest(format!("{what}: upload interrupted")))?;
        if out.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "{what} exceeds the {limit}-byte limit"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}

/// A blob as a response. The reader verifies as it goes; if the stored
/// bytes turn out corrupt, the stream fails and the connection is cut
/// before the declared length, so the client cannot take them as good.
pub fn blob_response(reader: Option<BlobReader>, size: u64) -> Response {
    let body = match reader {
        Some(r) => Body::from_stream(ReaderStream::new(r)),
        None => Body::empty(),
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        body,
    )
        .into_response()
}

/// A request body whose pauses are bounded: once no data has come for
/// `limit`, it fails (the handler sees an interrupted upload and stores
/// nothing), so a client trickling a body cannot hold a request forever.
pub struct IdleBody {
    inner: Body,
    limit: std::time::Duration,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl IdleBody {
    /// `inner`, failing after `limit` without a frame.
    pub fn new(inner: Body, limit: std::time::Duration) -> Self {
        Self {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + this.limit;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request body paused too long",
                ))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
