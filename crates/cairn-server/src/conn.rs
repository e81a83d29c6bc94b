//! Accepting connections so that no client can take the server down.
//!
//! `axum::serve` gives every connection a task and no limits at all, so one
//! client opening connections (or sending a header byte a second, or never
//! finishing a TLS handshake) could hold every file descriptor. Here:
//!
//! * **Counted at accept.** At most [`ConnectionLimits::per_client`] open
//!   connections per client address and [`ConnectionLimits::total`] in
//!   all; a connection over either is closed at once, before TLS or HTTP,
//!   and counted in `cairn_connections_refused_total`. So a client holding
//!   thousands of idle connections holds its own few, and `/healthz`
//!   still answers everyone else.
//! * **Bounded in time.** The TLS handshake must finish within
//!   [`crate::tls::HANDSHAKE_TIMEOUT`]; a request head must arrive whole
//!   within `header_timeout` of the connection going idle (hyper's header
//!   read timeout: it starts when the server waits for a request, so it
//!   covers a client that never sends a byte, one that sends a byte a
//!   second, and an idle keep-alive connection); a request body must not
//!   pause longer than `idle_timeout`, nor bring less than `min_rate`
//!   bytes a second over a window of `idle_timeout` (`body::IdleBody`); a
//!   response must not wait longer than `idle_timeout` for the client to
//!   read it, nor, in a window where the client held it up, be taken at
//!   less than `min_rate` ([`Stalls`]): a client reading a few bytes now
//!   and then cannot hold a connection and an open blob forever.
//!   Server-sent events keep flowing (they write, and a watcher that
//!   reads them is never holding anything up).
//!
//! Connections are HTTP/1.1 (the ALPN the TLS configuration offers);
//! shutdown stops accepting, lets requests in flight finish and closes
//! idle connections.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;

/// What one client and all clients together may hold, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections per client IP address.
    pub per_client: usize,
    /// Open connections in all (kept below the file-descriptor limit).
    pub total: usize,
    /// Time for a whole request head, from when the connection waits for one.
    pub header_timeout: Duration,
    /// Longest pause in a request body, and longest wait for the client to
    /// take a response; also the window `min_rate` is measured over.
    pub idle_timeout: Duration,
    /// Bytes a second a request body must bring, and a client holding up a
    /// response must take, over each `idle_timeout` (0: pauses only).
    pub min_rate: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            per_client: 128,
            total: 4096,
            header_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            min_rate: 1024,
        }
    }
}

/// File descriptors kept free of connections (the store, logs, watches).
const RESERVED_FDS: usize = 64;

impl ConnectionLimits {
    /// `total` lowered to what the file-descriptor limit allows.
    pub fn fitted_to_fd_limit(mut self) -> Self {
        if let Ok((soft, _)) = nofile() {
            let room = (soft as usize).saturating_sub(RESERVED_FDS).max(1);
            self.total = self.total.min(room);
        }
        self
    }
}

fn nofile() -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r.rlim_cur, r.rlim_max))
}

/// Open connections per client address and in total.
#[derive(Debug)]
struct Tracker {
    limits: ConnectionLimits,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
}

/// One admitted connection; its counts go down when it is dropped.
struct Admitted {
    tracker: Arc<Tracker>,
    ip: IpAddr,
}

impl Tracker {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut per_client = self.per_client.lock().expect("not poisoned");
        let mine = per_client.entry(ip).or_default();
        if *mine >= self.limits.per_client
            || self.total.load(Ordering::Relaxed) >= self.limits.total
        {
            if *mine == 0 {
                per_client.remove(&ip);
            }
            return None;
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            tracker: self.clone(),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_client = self.tracker.per_client.lock().expect("not poisoned");
        if let Some(n) = per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_client.remove(&self.ip);
            }
        }
        self.tracker.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then waits
/// for the connections (told to close once their request is answered).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    state: crate::State,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let tracker = Arc::new(Tracker {
        limits,
        per_client: Mutex::default(),
        total: AtomicUsize::new(0),
    });
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like are transient.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(admitted) = tracker.admit(peer.ip()) else {
            state.metrics.connection_refused();
            tracing::debug!("refusing a connection from {peer}: over the limit");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            router: router.clone(),
            limits,
            watcher: graceful.watcher(),
            peer,
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            match tls {
                None => connection.serve(tcp).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(tcp);
                    match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer}: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// What serving one accepted connection needs.
struct Connection {
    router: Router,
    limits: ConnectionLimits,
    watcher: hyper_util::server::graceful::Watcher,
    peer: SocketAddr,
}

impl Connection {
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(Stalls::new(
            io,
            self.limits.idle_timeout,
            self.limits.min_rate,
        ));
        let service = TowerToHyperService::new(self.router);
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .serve_connection(io, service);
        if let Err(e) = self.watcher.watch(conn).await {
            tracing::debug!("connection with {}: {e}", self.peer);
        }
    }
}

/// An I/O stream whose writes fail once they have waited `limit` for the
/// client to read, or once a window of `limit` in which the client held
/// writes up took less than `rate` bytes a second: a client that stops
/// reading a response, or reads it a trickle at a time, lets go of its
/// connection. Reads are not timed here (a response stream waits on them).
struct Stalls<I> {
    io: I,
    limit: Duration,
    rate: u64,
    stalled: Option<Pin<Box<Sleep>>>,
    window_end: tokio::time::Instant,
    window_bytes: u64,
    held_up: bool,
}

impl<I> Stalls<I> {
    fn new(io: I, limit: Duration, rate: u64) -> Self {
        Self {
            io,
            limit,
            rate,
            stalled: None,
            window_end: tokio::time::Instant::now() + limit,
            window_bytes: 0,
            held_up: false,
        }
    }

    /// At a window's end: fails if the client held writes up and took
    /// too little, else starts the next window.
    fn check_window(&mut self) -> io::Result<()> {
        let now = tokio::time::Instant::now();
        if now < self.window_end {
            return Ok(());
        }
        let needed = (self.rate as f64 * self.limit.as_secs_f64()) as u64;
        if self.held_up && self.window_bytes < needed {
            tracing::info!(
                "cutting off a client that read {} bytes in {:?}, slower than {} bytes/s",
                self.window_bytes,
                self.limit,
                self.rate
            );
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read the response too slowly",
            ));
        }
        self.window_end = now + self.limit;
        self.window_bytes = 0;
        self.held_up = false;
        Ok(())
    }

    /// Passes `ready` through, arming the timer while it is pending and
    /// failing once the timer has run out or the window was too slow.
    fn watch(
        &mut self,
        cx: &mut Context<'_>,
        ready: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check_window() {
            return Poll::Ready(Err(e));
        }
        if let Poll::Ready(done) = ready {
            self.stalled = None;
            if let Ok(n) = done {
                self.window_bytes += n as u64;
            }
            return Poll::Ready(done);
        }
        if !self.held_up {
            // A window is judged from the first hold-up in it on, whole.
            self.held_up = true;
            self.window_end = tokio::time::Instant::now() + self.limit;
            self.window_bytes = 0;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// [`watch`](Self::watch) for a flush, which moves no bytes.
    fn watch_flush(
        &mut self,
        cx: &mut Context<'_>,
        ready: Poll<io::Result<()>>,
    ) -> Poll<io::Result<()>> {
        self.watch(cx, ready.map_ok(|()| 0)).map_ok(|_| ())
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Stalls<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Stalls<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let ready = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, ready)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let ready = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, ready)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let ready = Pin::new(&mut self.io).poll_flush(cx);
        self.watch_flush(cx, ready)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limits_and_forgets_closed_connections() {
        let tracker = Arc::new(Tracker {
            limits: ConnectionLimits {
                per_client: 2,
                total: 3,
                ..ConnectionLimits::default()
            },
            per_client: Mutex::default(),
            total: AtomicUsize::new(0),
        });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = tracker.admit(a).unwrap();
        let _a2 = tracker.admit(a).unwrap();
        assert!(tracker.admit(a).is_none(), "per client");
        let _b1 = tracker.admit(b).unwrap();
        assert!(tracker.admit(b).is_none(), "in total");
        drop(a1);
        assert!(tracker.admit(b).is_some());
        assert!(tracker.per_client.lock().unwrap().len() <= 2);
    }
}
