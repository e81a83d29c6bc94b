//! A small HTTP load client for the agent's swap tests and benchmark:
//! threads sending `GET /` to one loopback address as fast as the server
//! answers, bounded in time, counting every failure with its reason.
//!
//! Half the threads keep their connection alive (and reconnect when the
//! server says `Connection: close`, as a draining server does); the other
//! half open a connection per request, so both the accept queue and idle
//! keep-alive connections are exercised across a swap. Each request's
//! start time and latency are kept, so a caller can split them into
//! "during a swap" and "steady state".

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// When it started, since the load began.
    pub at: Duration,
    /// How long it took.
    pub latency: Duration,
    /// Whether it got a whole 200 answer.
    pub ok: bool,
}

/// What the load saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Every request, in no particular order.
    pub samples: Vec<Sample>,
    /// Failures by reason.
    pub errors: BTreeMap<String, u64>,
    /// Answers by version.
    pub versions: BTreeMap<String, u64>,
}

impl Report {
    /// Requests answered.
    pub fn ok(&self) -> u64 {
        self.samples.iter().filter(|s| s.ok).count() as u64
    }

    /// Requests failed.
    pub fn failed(&self) -> u64 {
        self.samples.iter().filter(|s| !s.ok).count() as u64
    }
}

/// Runs `threads` clients against `addr` until `stop` is set or `limit`
/// passes; `start` is the instant sample times count from.
pub fn run(
    addr: SocketAddr,
    threads: usize,
    stop: Arc<AtomicBool>,
    limit: Duration,
    start: Instant,
) -> Report {
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || client(addr, i % 2 == 0, &stop, start + limit, start))
        })
        .collect();
    let mut report = Report::default();
    for h in handles {
        let r = h.join().expect("a load thread panicked");
        report.samples.extend(r.samples);
        for (k, v) in r.errors {
            *report.errors.entry(k).or_default() += v;
        }
        for (k, v) in r.versions {
            *report.versions.entry(k).or_default() += v;
        }
    }
    report
}

fn client(
    addr: SocketAddr,
    keep_alive: bool,
    stop: &AtomicBool,
    end: Instant,
    start: Instant,
) -> Report {
    let mut report = Report::default();
    let mut conn: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let began = Instant::now();
        let result = request(addr, keep_alive, &mut conn);
        let sample = Sample {
            at: began - start,
            latency: began.elapsed(),
            ok: result.is_ok(),
        };
        report.samples.push(sample);
        match result {
            Ok(version) => *report.versions.entry(version).or_default() += 1,
            Err(e) => {
                conn = None;
                *report.errors.entry(e).or_default() += 1;
            }
        }
    }
    report
}

/// One `GET /`; returns the version answered.
fn request(
    addr: SocketAddr,
    keep_alive: bool,
    conn: &mut Option<BufReader<TcpStream>>,
) -> Result<String, String> {
    if conn.is_none() {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect: {}", e.kind()))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        *conn = Some(BufReader::new(s));
    }
    let reader = conn.as_mut().expect("connected");
    let close = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    reader
        .get_mut()
        .write_all(format!("GET / HTTP/1.1\r\nHost: load\r\n{close}\r\n").as_bytes())
        .map_err(|e| format!("write: {}", e.kind()))?;
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("read: {}", e.kind()))?;
    if line.is_empty() {
        return Err("closed before answering".into());
    }
    if !line.starts_with("HTTP/1.1 200") {
        return Err(format!("status {}", line.trim()));
    }
    let (mut length, mut server_closes) = (0usize, false);
    loop {
        let mut h = String::new();
        reader
            .read_line(&mut h)
            .map_err(|e| format!("read: {}", e.kind()))?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v
                .trim()
                .parse()
                .map_err(|_| "bad content-length".to_string())?;
        }
        if lower == "connection: close" {
            server_closes = true;
        }
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("body: {}", e.kind()))?;
    if server_closes || !keep_alive {
        *conn = None;
    }
    let body = String::from_utf8_lossy(&body);
    Ok(body.split(' ').nth(3).unwrap_or("?").to_string())
}

/// The `p`-th percentile (0–100) of `latencies`, in microseconds.
pub fn percentile(latencies: &mut [Duration], p: f64) -> u64 {
    if latencies.is_empty() {
        return 0;
    }
    latencies.sort_unstable();
    let i = ((p / 100.0) * (latencies.len() - 1) as f64).round() as usize;
    latencies[i].as_micros() as u64
}
