//! Deploying, swapping under load, rolling back, hooks, stopping.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fixture::{cairn, fixture, CAIRN, SERVICE};
use crate::harness::{eventually, hex, http_get, Options, TestAgent};
use crate::load;

const T: Duration = Duration::from_secs(30);

#[test]
fn a_promoted_release_runs_healthy_and_is_reported() {
    let fx = fixture();
    let mut a = TestAgent::new("deploy", Options::default());
    a.start();
    fx.promote(&fx.v1, "deploy", "ci", None);
    let status = a.wait_serving("1", T);
    assert_eq!(a.version().as_deref(), Some("1"));
    assert_eq!(status["member"]["sequence"], 1);
    assert_eq!(
        status["member"]["release"]["hash"],
        fx.v1.split('/').next().unwrap()
    );
    assert_eq!(status["processes"].as_array().unwrap().len(), 1);
    assert_eq!(http_get(a.status_addr, "/healthz").unwrap().0, 200);
    let (_, metrics) = http_get(a.status_addr, "/metrics").unwrap();
    assert!(
        metrics.contains("cairn_agent_swaps_total{service=\"http-hello\",set=\"deploy\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("cairn_agent_healthy{service=\"http-hello\",set=\"deploy\"} 1"));

    // Generation 1 is current, read-only, and its files come from the
    // agent's own store.
    let current = std::fs::read_link(a.state.join("current")).unwrap();
    assert_eq!(
        current.to_str().unwrap(),
        format!("generations/1-{}", hex(&fx.v1))
    );
    assert!(a.has_blob(&fx.artifact(&fx.v1)));

    // The member record is in the store, for `cairn status` and the dashboard.
    let table = cairn(
        &fx.store,
        &fx.keys,
        &fx.root,
        &["status", SERVICE, "--set", "deploy"],
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SET"), "{table}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..8],
        [
            "deploy",
            "a1",
            "1",
            &hex(&fx.v1)[..12],
            "1",
            "1",
            "running",
            "healthy"
        ],
        "{table}"
    );
    let json = cairn(
        &fx.store,
        &fx.keys,
        &fx.root,
        &["--json", "status", SERVICE, "--set", "deploy"],
    );
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = &report["members"];
    assert_eq!(rows[0]["record"]["state"], "running");
    assert!(rows[0]["age"].as_i64().unwrap() < 30);
    let target = report["rollouts"][0]["target"].as_str().unwrap_or_default();
    assert!(target.contains(hex(&fx.v1)), "{json}");

    // The service's output, through `cairn logs`.
    let logs = Command::new(CAIRN)
        .args(["logs", SERVICE, "--config"])
        .arg(&a.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.status.success());
    assert!(
        text.contains("] http-hello 1 serving on 2 socket(s)"),
        "{text}"
    );

    // A status for an unknown set is an error with its exit status.
    let out = Command::new(CAIRN)
        .args(["--store"])
        .arg(&fx.store)
        .args(["status", SERVICE, "--set", "nobody-here"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no agent has reported"));
}

#[test]
fn a_swap_under_load_drops_no_request() {
    let fx = fixture();
    let mut a = TestAgent::new("load", Options::default());
    a.start();
    fx.promote(&fx.v1, "load", "ci", None);
    a.wait_serving("1", T);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let load = {
        let (stop, addr) = (stop.clone(), a.http);
        std::thread::spawn(move || load::run(addr, 4, stop, Duration::from_secs(40), start))
    };
    std::thread::sleep(Duration::from_millis(500));
    fx.promote(&fx.v2, "load", "ci", None);
    let status = a.wait_serving("2", T);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let report = load.join().unwrap();
    let mut latencies: Vec<Duration> = report.samples.iter().map(|s| s.latency).collect();
    let last = report
        .samples
        .iter()
        .map(|s| s.at)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{} requests in {last:?}, p50 {} µs, p99 {} µs, versions {:?}",
        report.ok(),
        load::percentile(&mut latencies, 50.0),
        load::percentile(&mut latencies, 99.0),
        report.versions
    );
    assert_eq!(
        report.failed(),
        0,
        "failed requests across the swap: {:?}",
        report.errors
    );
    assert!(
        report.ok() > 100,
        "too little load to mean anything: {}",
        report.ok()
    );
    assert!(
        report.versions.contains_key("1") && report.versions.contains_key("2"),
        "both versions answered: {:?}",
        report.versions
    );
    let t = &status["last_update"];
    assert_eq!(t["outcome"], "swapped");
    for step in [
        "noticed",
        "verified",
        "fetched",
        "materialized",
        "started",
        "healthy",
        "old_stopped",
        "done",
    ] {
        assert!(t[step].as_i64().unwrap() > 0, "{step} not reached: {t}");
    }
    assert!(t["started"].as_i64() <= t["healthy"].as_i64());
    assert!(t["healthy"].as_i64() <= t["old_stopped"].as_i64());
    assert_eq!(a.service_pids().len(), 1, "the old process is gone");
}

#[test]
fn a_release_failing_its_health_check_is_rolled_back() {
    let fx = fixture();
    let mut a = TestAgent::new("rollback", Options::default());
    a.start();
    fx.promote(&fx.v2, "rollback", "ci", None);
    a.wait_serving("2", T);
    let serving = a.service_pids();
    fx.promote(&fx.v3, "rollback", "ci", None);
    let status = a.wait_for("the rollback", T, |s| {
        s["counters"]["rollbacks"] == 1 && s["member"]["state"] == "running"
    });
    assert_eq!(a.version().as_deref(), Some("2"));
    assert_eq!(a.service_pids(), serving, "the v2 process never stopped");
    assert_eq!(status["member"]["version"], "2");
    let error = status["member"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("release 3") && error.contains("answered 503"),
        "{error}"
    );
    assert_eq!(
        status["failed"][0]["release"]["hash"],
        fx.v3.split('/').next().unwrap()
    );
    assert_eq!(status["last_update"]["outcome"], "rolled-back");
    let current = std::fs::read_link(a.state.join("current")).unwrap();
    assert!(
        current.to_str().unwrap().ends_with(hex(&fx.v2)),
        "current points back"
    );
    let state = a.state_json();
    assert_eq!(state["failed"][0]["sequence"], 2);

    // Reported in the store too, and the set's rollout halted on it
    // (exit 3).
    let out = Command::new(CAIRN)
        .arg("--store")
        .arg(&fx.store)
        .args(["--json", "status", SERVICE, "--set", "rollback"])
        .env_remove("CAIRN_STORE")
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{json}");
    assert!(json.contains("answered 503"), "{json}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["rollouts"][0]["phase"], "halted", "{json}");
    assert_eq!(report["rollouts"][0]["failed"][0], "a1", "{json}");

    // Not retried while the statement stays the same …
    std::thread::sleep(Duration::from_secs(2));
    let again = a.status().unwrap();
    assert_eq!(again["counters"]["rollbacks"], 1);
    assert_eq!(again["counters"]["swaps"], 1);
    // … but a newer statement for it is tried again.
    fx.promote(&fx.v3, "rollback", "ci", None);
    a.wait_for("the second rollback", T, |s| {
        s["counters"]["rollbacks"] == 2 && s["member"]["state"] == "running"
    });
    assert_eq!(a.version().as_deref(), Some("2"));
    assert!(
        !a.generations().iter().any(|g| g.ends_with(hex(&fx.v3))),
        "the failed generation is pruned: {:?}",
        a.generations()
    );
}

#[test]
fn hooks_run_around_swaps_and_a_failing_pre_swap_aborts() {
    let fx = fixture();
    let seen = fx.root.join("tests/hooks-seen");
    let veto = fx.root.join("tests/hooks-veto");
    let _ = std::fs::remove_file(&veto);
    let script = |name: &str| {
        format!(
            "[\"/bin/sh\", \"-c\", \"echo {name} $CAIRN_OLD_VERSION $CAIRN_NEW_VERSION >> {seen}; test ! -e {veto}\"]",
            seen = seen.display(),
            veto = veto.display()
        )
    };
    let extra = format!(
        "\n[hooks]\npre_swap = {}\npost_swap = {}\non_rollback = {}\ntimeout = \"10s\"\n",
        script("pre"),
        script("post"),
        script("rollback")
    );
    let _ = std::fs::remove_file(&seen);
    let mut a = TestAgent::new(
        "hooks",
        Options {
            extra,
            ..Options::default()
        },
    );
    a.start();
    fx.promote(&fx.v1, "hooks", "ci", None);
    a.wait_serving("1", T);
    fx.promote(&fx.v2, "hooks", "ci", None);
    a.wait_serving("2", T);
    fx.promote(&fx.v3, "hooks", "ci", None);
    a.wait_for("the rollback", T, |s| {
        s["counters"]["rollbacks"] == 1 && s["member"]["state"] == "running"
    });
    let lines = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(
        lines, "pre 1\npost 1\npre 1 2\npost 1 2\npre 2 3\nrollback 2 3\n",
        "hooks in order with the old and new versions"
    );

    // A pre_swap hook that fails aborts the swap: nothing is switched.
    std::fs::write(&veto, b"").unwrap();
    fx.promote(&fx.v1, "hooks", "ci", None);
    let s = a.wait_for("the aborted swap", T, |s| {
        s["last_update"]["outcome"] == "aborted"
    });
    assert!(
        s["member"]["last_error"]
            .as_str()
            .unwrap()
            .contains("hook pre_swap failed"),
        "{s}"
    );
    assert_eq!(a.version().as_deref(), Some("2"));
    assert_eq!(s["member"]["state"], "running");
}

#[test]
fn sigterm_stops_the_service_and_sigusr2_leaves_it_running() {
    let fx = fixture();
    let mut a = TestAgent::new("stop", Options::default());
    a.start();
    fx.promote(&fx.v1, "stop", "ci", None);
    a.wait_serving("1", T);
    let pids = a.service_pids();

    // SIGUSR2: the agent leaves, the service stays; the next agent adopts it.
    assert!(a.signal_and_wait(libc::SIGUSR2).success());
    assert_eq!(a.service_pids(), pids);
    assert_eq!(a.version().as_deref(), Some("1"));
    a.start();
    a.wait_serving("1", T);
    assert_eq!(a.service_pids(), pids, "adopted, not restarted");
    assert!(a.log().contains(&format!("adopted process {}", pids[0])));

    // SIGTERM: the service gets its stop signal, drains, and exits.
    assert!(a.signal_and_wait(libc::SIGTERM).success());
    assert!(eventually(Duration::from_secs(10), || a
        .service_pids()
        .is_empty()));
    assert!(http_get(a.http, "/").is_err(), "nothing listens any more");
    let json = cairn(
        &fx.store,
        &fx.keys,
        &fx.root,
        &["--json", "status", SERVICE, "--set", "stop"],
    );
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = &report["members"];
    assert_eq!(rows[0]["record"]["state"], "stopped");
    assert_eq!(rows[0]["record"]["health"], "unknown");
    let logs = std::fs::read_to_string(a.state.join(format!("logs/{SERVICE}.log"))).unwrap();
    assert!(logs.contains("drained; exiting"), "{logs}");
}

#[test]
fn an_agent_follows_a_channel_in_s3_by_polling() {
    use cairn_store::moto::Moto;

    let fx = fixture();
    let moto = Moto::start();
    moto.create_bucket("agents");
    let url = moto.url("agents", "fleet");
    let aws = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let channel = format!("channels/{SERVICE}/s3poll");
    // Releases travel to the bucket the way a team would send them: the
    // channel, with its history and every release it names.
    let send = || {
        let out = Command::new(CAIRN)
            .arg("--store")
            .arg(&fx.store)
            .args(["store", "copy", "--to", &url, &channel])
            .env_remove("CAIRN_STORE")
            .env_remove("CAIRN_TOKEN")
            .envs(aws)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "store copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    fx.promote(&fx.v1, "s3poll", "ci", None);
    send();

    let mut a = TestAgent::new(
        "s3poll",
        Options {
            store: Some(url.clone()),
            ..Options::default()
        },
    );
    a.start_with(&aws);
    a.wait_serving("1", T);

    // S3 cannot push: the agent sees the next statement by polling.
    fx.promote(&fx.v2, "s3poll", "ci", None);
    send();
    let s = a.wait_serving("2", T);
    assert_eq!(s["member"]["sequence"], 2, "{s}");
    assert_eq!(a.version().as_deref(), Some("2"));
    assert!(
        s["counters"]["store_errors"].as_u64() == Some(0),
        "conditional polls were counted as store errors: {s}"
    );
}
