//! Prometheus metrics, rendered by hand in the text exposition format.
//!
//! The set is small and fixed (requests by route/method/status, a latency
//! histogram per route, bytes in and out, action-cache and CAS hits and
//! misses), so a few atomics and one mutex-guarded map cover it without
//! pulling a metrics framework and its registry into the dependency tree.
//! Routes are axum's *matched* paths (`/cas/{hash}`), never raw URLs, and
//! methods are the standard ones or `other` ([`method_label`]), so a client
//! cannot grow the label set: HTTP lets a request name any method token,
//! and an unauthenticated client sending a new one per request would
//! otherwise add a line to every scrape and memory that is never freed.
//!
//! Latency is measured until the response head is ready; the time to
//! stream a large body is visible in the byte counters instead.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// Which cache a lookup went to.
#[derive(Clone, Copy, Debug)]
pub enum Cache {
    /// `/ac/…`
    Ac,
    /// `/cas/…`
    Cas,
}

/// Every metric the server exports.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// hits, misses for ac then cas.
    cache: [AtomicU64; 4],
    connections_refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// Counts a cache lookup.
    pub fn cache_lookup(&self, cache: Cache, hit: bool) {
        let i = (cache as usize) * 2 + usize::from(!hit);
        self.cache[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed at once for being over a limit.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .unwrap()
            .entry((route.into(), method.into(), status))
            .or_default() += 1;
        let mut latency = self.latency.lock().unwrap();
        let h = latency.entry(route.into()).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP cairn_http_requests_total Requests by route, method and status.\n");
        out.push_str("# TYPE cairn_http_requests_total counter\n");
        for ((route, method, status), n) in self.requests.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "cairn_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        self.render_latency(&mut out);
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let v = v.load(Ordering::Relaxed);
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        };
        counter(
            &mut out,
            "cairn_http_request_bytes_total",
            "Request body bytes received.",
            &self.bytes_in,
        );
        counter(
            &mut out,
            "cairn_http_response_bytes_total",
            "Response body bytes sent.",
            &self.bytes_out,
        );
        counter(
            &mut out,
            "cairn_connections_refused_total",
            "Connections closed at once: over the per-client or total limit.",
            &self.connections_refused,
        );
        out.push_str("# HELP cairn_cache_lookups_total Bazel cache GETs by cache and result.\n");
        out.push_str("# TYPE cairn_cache_lookups_total counter\n");
        for (i, (cache, result)) in [
            ("ac", "hit"),
            ("ac", "miss"),
            ("cas", "hit"),
            ("cas", "miss"),
        ]
        .iter()
        .enumerate()
        {
            let n = self.cache[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "cairn_cache_lookups_total{{cache=\"{cache}\",result=\"{result}\"}} {n}"
            );
        }
        out
    }

    fn render_latency(&self, out: &mut String) {
        out.push_str("# HELP cairn_http_request_duration_seconds Time to the response head.\n");
        out.push_str("# TYPE cairn_http_request_duration_seconds histogram\n");
        let name = "cairn_http_request_duration_seconds";
        for (route, h) in self.latency.lock().unwrap().iter() {
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {}", h.count);
        }
    }
}

/// Middleware: counts the request, its latency and its body bytes.
pub async fn track(State(state): State<crate::State>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let method = method_label(req.method()).to_string();
    let start = Instant::now();
    let req = req.map(|b| Body::new(Counted::new(b, state.clone(), Direction::In)));
    let response = next.run(req).await;
    let seconds = start.elapsed().as_secs_f64();
    state
        .metrics
        .observe(&route, &method, response.status().as_u16(), seconds);
    response.map(|b| Body::new(Counted::new(b, state, Direction::Out)))
}

/// A request method as a label: the methods HTTP defines, else `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    const KNOWN: [(M, &str); 9] = [
        (M::GET, "GET"),
        (M::HEAD, "HEAD"),
        (M::PUT, "PUT"),
        (M::POST, "POST"),
        (M::DELETE, "DELETE"),
        (M::OPTIONS, "OPTIONS"),
        (M::PATCH, "PATCH"),
        (M::CONNECT, "CONNECT"),
        (M::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(m, _)| m == method)
        .map_or("other", |(_, label)| label)
}

#[derive(Clone, Copy)]
enum Direction {
    In,
    Out,
}

/// A body that adds the size of each data frame to a byte counter.
struct Counted {
    inner: Body,
    state: crate::State,
    direction: Direction,
}

impl Counted {
    fn new(inner: Body, state: crate::State, direction: Direction) -> Self {
        Self {
            inner,
            state,
            direction,
        }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &poll {
            if let Some(data) = frame.data_ref() {
                let m = &self.state.metrics;
                let counter = match self.direction {
                    Direction::In => &m.bytes_in,
                    Direction::Out => &m.bytes_out,
                };
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
