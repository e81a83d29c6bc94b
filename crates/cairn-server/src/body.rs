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

/// How a request body broke off, if it did.
#[derive(Debug, Default)]
pub struct Broken {
    broken: AtomicBool,
    stalled: std::sync::OnceLock<Stalled>,
}

impl Broken {
    /// Records a body error.
    fn set(&self, e: &axum::Error) {
        if let Some(s) = stalled(e) {
            let _ = self.stalled.set(s);
        }
        self.broken.store(true, Ordering::SeqCst);
    }
}

/// A request body as a blob stream, and a record that is set if the client
/// broke off the upload or was cut off (so the handler can tell that from
/// a bad digest).
pub fn upload(body: Body) -> (BlobReader, Arc<Broken>) {
    let broken = Arc::new(Broken::default());
    let flag = broken.clone();
    let stream = body.into_data_stream().map_err(move |e| {
        flag.set(&e);
        io::Error::other(e)
    });
    (Box::pin(StreamReader::new(stream)), broken)
}

/// The error for a failed upload, preferring "interrupted" (400) when the
/// body itself broke off and "too slow" (408) when it was cut off.
pub fn upload_error(e: cairn_store::StoreError, broken: &Broken) -> ApiError {
    if let Some(s) = broken.stalled.get() {
        return ApiError::Timeout(s.to_string());
    }
    if broken.broken.load(Ordering::SeqCst) {
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

/// Bytes of request bodies held in memory at once, by all requests
/// together: queries, batches and ref values are read whole before they
/// are used, and without a shared bound many clients each sending a
/// 16 MiB query (anonymous readers among them) could make the server hold
/// gigabytes.
pub const BUFFER_BUDGET: usize = 256 << 20;

/// The budget's unit (permits are KiB, so a semaphore can count them).
const UNIT: usize = 1024;

/// Bodies read whole share [`BUFFER_BUDGET`].
#[derive(Debug)]
pub struct Buffers(Arc<tokio::sync::Semaphore>);

impl Default for Buffers {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(BUFFER_BUDGET / UNIT)))
    }
}

/// A body read whole, holding its share of the budget while it lives.
#[derive(Debug)]
pub struct Buffered {
    bytes: Bytes,
    _held: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::ops::Deref for Buffered {
    type Target = Bytes;
    fn deref(&self) -> &Bytes {
        &self.bytes
    }
}

impl Buffers {
    /// Grows `held` to cover `total` bytes, or refuses (503) if the
    /// budget is spent.
    fn cover(
        &self,
        held: &mut Option<tokio::sync::OwnedSemaphorePermit>,
        total: usize,
        what: &str,
    ) -> Result<(), ApiError> {
        let units = total.div_ceil(UNIT);
        let have = held.as_ref().map_or(0, |p| p.num_permits());
        if units <= have {
            return Ok(());
        }
        match self.0.clone().try_acquire_many_owned((units - have) as u32) {
            Ok(more) => {
                match held {
                    Some(p) => p.merge(more),
                    None => *held = Some(more),
                }
                Ok(())
            }
            Err(_) => {
                tracing::warn!(
                    "refusing {what}: {BUFFER_BUDGET} bytes of request bodies in memory"
                );
                Err(ApiError::Busy(format!(
                    "{what}: the server holds {BUFFER_BUDGET} bytes of other requests' bodies; \
                     retry later"
                )))
            }
        }
    }
}

/// Reads a whole body of at most `limit` bytes (413 beyond), within the
/// server's shared [`Buffers`] (503 when they are spent).
pub async fn read_limited(
    buffers: &Buffers,
    body: Body,
    limit: usize,
    what: &str,
) -> Result<Buffered, ApiError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    let mut held = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match stalled(&e) {
            Some(s) => ApiError::Timeout(format!("{what}: {s}")),
            None => ApiError::BadRequest(format!("{what}: upload interrupted")),
        })?;
        if out.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "{what} exceeds the {limit}-byte limit"
            )));
        }
        buffers.cover(&mut held, out.len() + chunk.len(), what)?;
        out.extend_from_slice(&chunk);
    }
    Ok(Buffered {
        bytes: out.into(),
        _held: held,
    })
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

/// Why a request body was cut off by [`IdleBody`].
#[derive(Clone, Debug, thiserror::Error)]
pub enum Stalled {
    /// No byte came for this long.
    #[error("the upload paused longer than {0:?}; nothing stored")]
    Paused(std::time::Duration),
    /// Fewer bytes than the minimum rate came in one window.
    #[error(
        "the upload was slower than {rate} bytes/s over {window:?} (got {got} bytes); \
         nothing stored"
    )]
    TooSlow {
        /// The minimum rate, bytes per second.
        rate: u64,
        /// The window it is measured over.
        window: std::time::Duration,
        /// What came in the window.
        got: u64,
    },
}

/// The [`Stalled`] in an error's chain, if a body was cut off.
pub fn stalled(e: &(dyn std::error::Error + 'static)) -> Option<Stalled> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(s) = e.downcast_ref::<Stalled>() {
            return Some(s.clone());
        }
        next = e.source();
    }
    None
}

/// A request body that must keep moving: once no data has come for
/// `limit`, or fewer than `rate` bytes a second came over a window of
/// `limit` in which it waited for the client (the first window is the
/// grace period), it fails with
/// [`Stalled`] (the handler answers 408 and stores nothing), so a client
/// trickling a byte now and then cannot hold a request, its temporary
/// file and its reservation forever. A rate of 0 checks pauses only.
pub struct IdleBody {
    inner: Body,
    limit: std::time::Duration,
    rate: u64,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    window_end: std::pin::Pin<Box<tokio::time::Sleep>>,
    window_bytes: u64,
    /// Whether the body waited for the client in this window (a window
    /// in which the server was too busy to read is not the client's).
    waited: bool,
}

impl IdleBody {
    /// `inner`, failing after `limit` without a frame or below `rate`
    /// bytes a second over a window of `limit`.
    pub fn new(inner: Body, limit: std::time::Duration, rate: u64) -> Self {
        Self {
            inner,
            limit,
            rate,
            timer: Box::pin(tokio::time::sleep(limit)),
            window_end: Box::pin(tokio::time::sleep(limit)),
            window_bytes: 0,
            waited: false,
        }
    }

    /// At the end of a window: fails if it brought too little, else
    /// starts the next.
    fn check_window(&mut self) -> Result<(), Stalled> {
        let now = tokio::time::Instant::now();
        if now < self.window_end.deadline() {
            return Ok(());
        }
        let needed = (self.rate as f64 * self.limit.as_secs_f64()) as u64;
        if self.waited && self.window_bytes < needed {
            return Err(Stalled::TooSlow {
                rate: self.rate,
                window: self.limit,
                got: self.window_bytes,
            });
        }
        self.window_bytes = 0;
        self.waited = false;
        self.window_end.as_mut().reset(now + self.limit);
        Ok(())
    }
}

fn fail(s: Stalled) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
    tracing::info!("cutting off a request body: {s}");
    std::task::Poll::Ready(Some(Err(axum::Error::new(s))))
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
        if tokio::time::Instant::now() >= this.timer.deadline() {
            return fail(Stalled::Paused(this.limit));
        }
        if let Err(s) = this.check_window() {
            return fail(s);
        }
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(|f| f.data_ref())) {
                    this.window_bytes += data.map_or(0, |d| d.len() as u64);
                }
                let deadline = tokio::time::Instant::now() + this.limit;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame)
            }
            Poll::Pending => {
                this.waited = true;
                if this.timer.as_mut().poll(cx).is_ready() {
                    return fail(Stalled::Paused(this.limit));
                }
                // Woken at the window's end to check it.
                while this.window_end.as_mut().poll(cx).is_ready() {
                    if let Err(s) = this.check_window() {
                        return fail(s);
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
