//! The driver of `bench/agent.sh`: times promotions until the new version
//! answers, and runs swaps under load. It talks to a running `cairn agent`
//! (its service socket and its status endpoint) and runs `cairn promote`.
//!
//! ```text
//! agent_bench latency --cairn C --store S --keys K --channel CH --http A --status A \
//!     --releases VERSION=DIGEST,… --out FILE
//! agent_bench swaps   … --releases VERSION=DIGEST,VERSION=DIGEST --count 20 --threads 4 --out FILE
//! ```
//!
//! `latency`: for each release, the time from starting `cairn promote` to
//! the new version answering `GET /`, and the agent's own timestamps of
//! each step (noticed, verified, fetched, materialized, started, healthy,
//! old stopped), all relative to that start.
//!
//! `swaps`: keeps `--threads` clients on the service for the whole run,
//! promotes the releases in turn `--count` times (each waits for the swap
//! to finish, then 1 s of steady state), and splits every request into
//! "during a swap" (from the promotion to the old process gone) or
//! "steady", with failures, counts and latency percentiles of each.

#[path = "../tests/agent/load.rs"]
mod load;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

struct Args {
    cairn: String,
    store: String,
    keys: String,
    channel: String,
    http: SocketAddr,
    status: SocketAddr,
    releases: Vec<(String, String)>,
    count: usize,
    threads: usize,
    out: String,
}

fn parse() -> (String, Args) {
    let mut it = std::env::args().skip(1);
    let mode = it.next().expect("mode: latency or swaps");
    let mut get = std::collections::HashMap::new();
    while let Some(k) = it.next() {
        get.insert(
            k.trim_start_matches("--").to_string(),
            it.next().expect("a value"),
        );
    }
    let take = |k: &str| {
        get.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("--{k} is needed"))
    };
    let releases = take("releases")
        .split(',')
        .map(|r| {
            let (v, d) = r.split_once('=').expect("VERSION=DIGEST");
            (v.to_string(), d.to_string())
        })
        .collect();
    let args = Args {
        cairn: take("cairn"),
        store: take("store"),
        keys: take("keys"),
        channel: take("channel"),
        http: take("http").parse().unwrap(),
        status: take("status").parse().unwrap(),
        releases,
        count: get.get("count").map_or(20, |c| c.parse().unwrap()),
        threads: get.get("threads").map_or(4, |c| c.parse().unwrap()),
        out: take("out"),
    };
    (mode, args)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn status(a: &Args) -> Value {
    get(a.status, "/status")
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or(Value::Null)
}

fn promote(a: &Args, digest: &str) {
    let out = Command::new(&a.cairn)
        .args(["--store", &a.store, "--keys", &a.keys, "promote", digest])
        .args(["--channel", &a.channel, "--key", "ci"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until the agent reports the update to `digest` finished.
fn wait_done(a: &Args, digest: &str) -> Value {
    let hash = digest.split('/').next().unwrap();
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let s = status(a);
        let u = &s["last_update"];
        if u["release"]["hash"] == hash && u["outcome"] != "" && s["member"]["state"] == "running" {
            return s;
        }
        assert!(Instant::now() < end, "no finished update to {digest}: {s}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn latency(a: &Args) -> Value {
    let mut runs = Vec::new();
    for (version, digest) in &a.releases {
        std::thread::sleep(Duration::from_secs(2));
        let t0 = now_ms();
        promote(a, digest);
        let promoted = now_ms();
        let end = Instant::now() + Duration::from_secs(60);
        let answered = loop {
            let body = get(a.http, "/").unwrap_or_default();
            if body.split(' ').nth(3) == Some(version.as_str()) {
                break now_ms();
            }
            assert!(Instant::now() < end, "{version} never answered");
            std::thread::sleep(Duration::from_millis(1));
        };
        let s = wait_done(a, digest);
        let u = &s["last_update"];
        let at = |k: &str| u[k].as_i64().filter(|t| *t > 0).map(|t| t - t0);
        runs.push(json!({
            "version": version,
            "promote_command": promoted - t0,
            "noticed": at("noticed"),
            "verified": at("verified"),
            "fetched": at("fetched"),
            "materialized": at("materialized"),
            "started": at("started"),
            "answering": answered - t0,
            "healthy": at("healthy"),
            "old_stopped": at("old_stopped"),
            "done": at("done"),
            "service_start_and_health": u["healthy"].as_i64().unwrap_or(0) - u["started"].as_i64().unwrap_or(0),
            "fetched_bytes": u["fetched_bytes"],
            "outcome": u["outcome"],
        }));
        eprintln!("{}", runs.last().unwrap());
    }
    json!({ "runs": runs })
}

fn swaps(a: &Args) -> Value {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let load = {
        let (stop, addr, threads) = (stop.clone(), a.http, a.threads);
        std::thread::spawn(move || load::run(addr, threads, stop, Duration::from_secs(600), start))
    };
    std::thread::sleep(Duration::from_secs(3));
    let mut windows = Vec::new();
    let serving = status(a)["member"]["release"]["hash"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut order: Vec<&(String, String)> = a.releases.iter().collect();
    order.sort_by_key(|(_, d)| d.starts_with(&serving)); // the one not serving first
    for i in 0..a.count {
        let (_, digest) = order[i % order.len()];
        let from = start.elapsed();
        promote(a, digest);
        wait_done(a, digest);
        windows.push((from, start.elapsed()));
        eprintln!("swap {} done in {:?}", i + 1, start.elapsed() - from);
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let report = load.join().unwrap();
    let in_swap = |at: Duration| windows.iter().any(|(f, t)| at >= *f && at <= *t);
    let summary = |pick: &dyn Fn(&load::Sample) -> bool| {
        let picked: Vec<&load::Sample> = report.samples.iter().filter(|s| pick(s)).collect();
        let mut lat: Vec<Duration> = picked.iter().filter(|s| s.ok).map(|s| s.latency).collect();
        json!({
            "requests": picked.len(),
            "failed": picked.iter().filter(|s| !s.ok).count(),
            "p50_us": load::percentile(&mut lat, 50.0),
            "p90_us": load::percentile(&mut lat, 90.0),
            "p99_us": load::percentile(&mut lat, 99.0),
            "p999_us": load::percentile(&mut lat, 99.9),
            "max_us": load::percentile(&mut lat, 100.0),
        })
    };
    let total: Duration = report
        .samples
        .iter()
        .map(|s| s.at)
        .max()
        .unwrap_or_default();
    let swap_time: Duration = windows.iter().map(|(f, t)| *t - *f).sum();
    json!({
        "swaps": a.count,
        "threads": a.threads,
        "seconds": total.as_secs_f64(),
        "seconds_in_swaps": swap_time.as_secs_f64(),
        "requests": report.samples.len(),
        "answered": report.ok(),
        "failed": report.failed(),
        "errors": report.errors,
        "versions": report.versions,
        "during_swaps": summary(&|s| in_swap(s.at)),
        "steady": summary(&|s| !in_swap(s.at)),
    })
}

fn main() {
    let (mode, args) = parse();
    let result = match mode.as_str() {
        "latency" => latency(&args),
        "swaps" => swaps(&args),
        other => panic!("unknown mode {other}"),
    };
    std::fs::write(&args.out, serde_json::to_vec_pretty(&result).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
}
