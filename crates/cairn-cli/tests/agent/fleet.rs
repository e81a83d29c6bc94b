//! Several agents of one deployment set on one machine, sharing one store,
//! each with its own state directory, id, sockets and status endpoint:
//! they roll releases out among themselves through the fleet records
//! alone (`fleet/<service>/<set>/…`).

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::fixture::{fixture, CAIRN, SERVICE};
use crate::harness::{eventually, http_get, Options, TestAgent};

pub(crate) const T: Duration = Duration::from_secs(60);

/// Short intervals, so a rollout of three takes seconds (and a failed
/// gate check runs again after a second).
pub(crate) const FLEET: &str = r#"
[fleet]
poll = "300ms"
idle_poll = "2s"
heartbeat = "1s"
member_timeout = "4s"
steward_lease = "3s"
max_skew = "500ms"
check_retry = "1s"
"#;

/// One agent of the fleet set `set`, started, serving v1 (promoted to
/// `set`).
pub(crate) fn serving_v1(set: &str) -> TestAgent {
    let fx = fixture();
    let mut a = TestAgent::new(
        set,
        Options {
            extra: FLEET.to_string(),
            ..Options::default()
        },
    );
    a.start();
    fx.promote(&fx.v1, set, "ci", None);
    a.wait_serving("1", T);
    a
}

/// Three agents `m1`..`m3` following channel (and set) `set`, with
/// `deploy` as their `[deploy]` override (empty: the release's plan).
pub(crate) fn members(set: &str, deploy: &str) -> Vec<TestAgent> {
    ["m1", "m2", "m3"]
        .iter()
        .map(|id| {
            TestAgent::new(
                &format!("{set}-{id}"),
                Options {
                    id: Some(id.to_string()),
                    channel: Some(set.to_string()),
                    extra: format!("{FLEET}{deploy}"),
                    ..Options::default()
                },
            )
        })
        .collect()
}

/// `cairn [--json] status SERVICE --set SET` against the fixture's store.
pub(crate) fn status(set: &str, json: bool) -> Output {
    status_with(set, json, &[])
}

/// `cairn [--json] status SERVICE --set SET ARGS…`.
pub(crate) fn status_with(set: &str, json: bool, args: &[&str]) -> Output {
    let fx = fixture();
    let mut cmd = Command::new(CAIRN);
    cmd.arg("--store").arg(&fx.store);
    if json {
        cmd.arg("--json");
    }
    cmd.args(["status", SERVICE, "--set", set])
        .args(args)
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_TOKEN")
        .output()
        .unwrap()
}

/// The set's rollout record, if any.
pub(crate) fn rollout(set: &str) -> Option<Value> {
    let fx = fixture();
    let out = Command::new(CAIRN)
        .arg("--store")
        .arg(&fx.store)
        .args([
            "--json",
            "ref",
            "get",
            &format!("fleet/{SERVICE}/{set}/rollout"),
        ])
        .env_remove("CAIRN_STORE")
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    serde_json::from_str(v["value"].as_str()?).ok()
}

/// Waits for the rollout record to satisfy `cond`.
pub(crate) fn wait_rollout(set: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = None;
    let ok = eventually(T * 2, || {
        last = rollout(set);
        last.as_ref().is_some_and(&cond)
    });
    assert!(
        ok,
        "timed out waiting for the rollout to be {what}: {last:?}"
    );
    last.unwrap()
}

/// What a watcher saw, polling every member's service and status endpoint.
#[derive(Default, Debug)]
struct Seen {
    /// The most members swapping (updating or rolling back) at one moment.
    most_swapping: usize,
    /// Failed requests to a service, by member.
    failures: Vec<String>,
    /// Versions answered, by member index.
    versions: Vec<Vec<String>>,
    /// Polls of every member made.
    rounds: u64,
}

/// Polls every member's service (`GET /`) and status (`/status`) until
/// stopped.
struct Watcher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    fn start(agents: &[TestAgent]) -> Self {
        let targets: Vec<_> = agents.iter().map(|a| (a.http, a.status_addr)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen {
            versions: vec![Vec::new(); targets.len()],
            ..Seen::default()
        }));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let mut swapping = 0;
                for (i, (http, status)) in targets.iter().enumerate() {
                    match http_get(*http, "/") {
                        Ok((200, body)) => {
                            let v = body.split(' ').nth(3).unwrap_or("").to_string();
                            let mut seen = s.lock().unwrap();
                            if seen.versions[i].last() != Some(&v) {
                                seen.versions[i].push(v);
                            }
                        }
                        other => s
                            .lock()
                            .unwrap()
                            .failures
                            .push(format!("m{}: {other:?}", i + 1)),
                    }
                    let state = http_get(*status, "/status")
                        .ok()
                        .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
                        .map(|v| v["member"]["state"].as_str().unwrap_or("").to_string());
                    if matches!(state.as_deref(), Some("updating" | "rolling-back")) {
                        swapping += 1;
                    }
                }
                let mut seen = s.lock().unwrap();
                seen.most_swapping = seen.most_swapping.max(swapping);
                seen.rounds += 1;
                drop(seen);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Whether member `i` answered the versions `path` in that order: each
/// step may repeat, and during a swap the old and the new process both
/// answer on the shared socket, so they may alternate while it lasts.
fn went(seen: &Seen, i: usize, path: &[&str]) -> bool {
    let answered = &seen.versions[i];
    let mut at = 0;
    for v in answered {
        if path.get(at + 1) == Some(&v.as_str()) {
            at += 1;
        } else if path[at] != v && !(at > 0 && path[at - 1] == v) {
            return false;
        }
    }
    answered.first().map(String::as_str) == path.first().copied()
        && answered.last().map(String::as_str) == path.last().copied()
        && at == path.len() - 1
}

/// Whether every member soon runs one process and is not updating (a
/// swap under way when a rollout stopped finishes).
pub(crate) fn swaps_finish(agents: &[TestAgent]) -> bool {
    eventually(T, || {
        agents.iter().all(|a| {
            a.status().is_some_and(|s| {
                s["member"]["state"] != "updating"
                    && s["processes"].as_array().is_some_and(|p| p.len() == 1)
            })
        })
    })
}

pub(crate) fn start_all(agents: &mut [TestAgent], set: &str) {
    let fx = fixture();
    for a in agents.iter_mut() {
        a.start();
    }
    fx.promote(&fx.v1, set, "ci", None);
    for a in agents.iter() {
        a.wait_serving("1", T * 2);
    }
    wait_rollout(set, "done on v1", |r| r["phase"] == "done");
}

#[test]
fn a_rolling_rollout_swaps_one_member_at_a_time() {
    let fx = fixture();
    let mut agents = members("fleet-roll", "");
    start_all(&mut agents, "fleet-roll");

    let watcher = Watcher::start(&agents);
    fx.promote(&fx.v2, "fleet-roll", "ci", None);
    for a in &agents {
        a.wait_serving("2", T * 2);
    }
    let done = wait_rollout("fleet-roll", "done on v2", |r| r["phase"] == "done");
    let seen = watcher.finish();

    assert!(seen.rounds > 50, "the watcher polled too rarely: {seen:?}");
    assert_eq!(
        seen.most_swapping, 1,
        "max_unavailable = 1: at most one member swapping at any moment: {seen:?}"
    );
    assert!(
        seen.failures.is_empty(),
        "every member kept serving: {seen:?}"
    );
    for i in 0..3 {
        assert!(went(&seen, i, &["1", "2"]), "m{}: {seen:?}", i + 1);
    }
    assert_eq!(done["sequence"], 2);
    assert_eq!(done["done"], 3, "{done}");
    assert!(done["slots"].as_array().unwrap().is_empty(), "{done}");
    let waves = done["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 3, "one member per wave: {done}");

    let out = status("fleet-roll", false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("phase      done"), "{text}");
    assert!(
        text.contains("members    3: 3 updated, 0 updating, 0 pending, 0 failed"),
        "{text}"
    );
    let out = status("fleet-roll", true);
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["rollouts"][0]["phase"], "done");
    assert_eq!(json["rollouts"][0]["updated"].as_array().unwrap().len(), 3);
    assert_eq!(json["members"].as_array().unwrap().len(), 3);
}

#[test]
fn a_canary_that_fails_health_halts_the_rollout_and_rolls_itself_back() {
    let fx = fixture();
    let canary = "\n[deploy]\nstrategy = \"canary\"\ncanary = { count = 1, bake = \"2s\" }\n";
    let mut agents = members("fleet-canary", canary);
    start_all(&mut agents, "fleet-canary");

    let watcher = Watcher::start(&agents);
    fx.promote(&fx.v3, "fleet-canary", "ci", None);
    let halted = wait_rollout("fleet-canary", "halted", |r| r["phase"] == "halted");
    let who = halted["halted"]["member"].as_str().unwrap().to_string();
    assert!(
        halted["halted"]["reason"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{who}: ")),
        "{halted}"
    );
    let index: usize = who[1..].parse().unwrap();
    let canary = &agents[index - 1];
    canary.wait_for("the canary back on v1", T, |s| {
        s["member"]["version"] == "1"
            && s["member"]["health"] == "healthy"
            && s["counters"]["rollbacks"] == 1
    });
    // The others get no turn: give them time to misbehave, then look.
    std::thread::sleep(Duration::from_secs(3));
    let seen = watcher.finish();
    assert!(
        seen.failures.is_empty(),
        "every member kept serving: {seen:?}"
    );
    for (i, a) in agents.iter().enumerate() {
        let s = a.status().unwrap();
        assert_eq!(s["member"]["version"], "1", "m{}: {s}", i + 1);
        assert_eq!(a.version().as_deref(), Some("1"));
        if i + 1 != index {
            assert_eq!(
                s["counters"]["swaps"],
                1,
                "m{} never swapped to v3: {s}",
                i + 1
            );
            assert_eq!(s["counters"]["rollbacks"], 0, "m{}: {s}", i + 1);
            assert_eq!(seen.versions[i], ["1"], "m{}: {seen:?}", i + 1);
        }
    }
    let record = rollout("fleet-canary").unwrap();
    assert_eq!(record["phase"], "halted", "still halted: {record}");
    assert!(record["slots"].as_array().unwrap().is_empty(), "{record}");

    let out = status("fleet-canary", false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a halted rollout: exit 3: {text}"
    );
    assert!(text.contains("phase      halted"), "{text}");
    assert!(text.contains(&format!("halted     {who}: ")), "{text}");
    assert!(text.contains("1 failed"), "{text}");
    let out = status("fleet-canary", true);
    assert_eq!(out.status.code(), Some(3));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["rollouts"][0]["failed"][0], who.as_str());
}

#[test]
fn a_member_killed_holding_a_slot_frees_it_when_its_lease_ends() {
    let fx = fixture();
    // m2 goes first, and dies (SIGKILL) once it switched under its slot.
    let pinned = "\n[deploy]\norder = [\"m2\"]\n";
    let mut agents = members("fleet-kill", pinned);
    start_all(&mut agents, "fleet-kill");
    assert_eq!(
        agents[1].signal_and_wait(libc::SIGUSR2).code(),
        Some(0),
        "m2 detaches, leaving its service running"
    );
    agents[1].start_with(&[("CAIRN_AGENT_CRASH_AT", "switched")]);
    agents[1].wait_serving("1", T);

    fx.promote(&fx.v2, "fleet-kill", "ci", None);
    let held = wait_rollout("fleet-kill", "m2 holding a slot", |r| {
        r["slots"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["member"] == "m2"))
    });
    let m2 = agents[1].wait_exit(T);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&m2),
        Some(libc::SIGKILL),
        "m2 died by SIGKILL"
    );
    let expires = held["slots"][0]["expires"].as_i64().unwrap();

    for a in [&agents[0], &agents[2]] {
        let s = a.wait_serving("2", T * 2);
        let started = s["last_update"]["started"].as_i64().unwrap() / 1000;
        assert!(
            started >= expires,
            "no one swapped before m2's lease ended ({expires}): {s}"
        );
    }
    let done = wait_rollout("fleet-kill", "done without m2", |r| r["phase"] == "done");
    assert!(done["slots"].as_array().unwrap().is_empty(), "{done}");

    // m2 comes back and takes its turn.
    agents[1].start();
    agents[1].wait_serving("2", T * 2);
    assert_eq!(agents[1].version().as_deref(), Some("2"));
}

/// `cairn status` flags matching [`FLEET`]'s member timeout and skew bound.
pub(crate) const TIMING: &[&str] = &["--member-timeout", "4s", "--max-skew", "500ms"];

/// `cairn rollout ACTION SERVICE --set SET` against the fixture's store.
/// Runs `cairn rollout ACTION` on `set`, expecting exit 0 and the line
/// `SERVICE/SET: TRANSITION` (`rolling -> paused`).
pub(crate) fn operated(action: &str, set: &str, transition: &str) {
    let out = operator(action, set);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{SERVICE}/{set}: {transition}")
    );
}

pub(crate) fn operator(action: &str, set: &str) -> Output {
    let fx = fixture();
    Command::new(CAIRN)
        .arg("--store")
        .arg(&fx.store)
        .args(["rollout", action, SERVICE, "--set", set])
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn a_paused_rollout_starts_no_update_until_resumed() {
    let fx = fixture();
    let mut agents = members("fleet-pause", "");
    start_all(&mut agents, "fleet-pause");
    fx.promote(&fx.v2, "fleet-pause", "ci", None);
    let first = eventually(T, || {
        agents.iter().any(|a| a.version().as_deref() == Some("2"))
    });
    assert!(first, "no member reached v2");
    operated("pause", "fleet-pause", "rolling -> paused");
    // A member in the middle of its swap finishes it; then nothing moves.
    wait_rollout("fleet-pause", "paused", |r| r["phase"] == "paused");
    assert!(
        swaps_finish(&agents),
        "a swap under way when paused did not finish"
    );
    let versions = || -> Vec<Option<String>> { agents.iter().map(|a| a.version()).collect() };
    let before = versions();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(versions(), before, "no member moved while paused");
    let on_v1 = before.iter().filter(|v| v.as_deref() == Some("1")).count();
    assert!(on_v1 >= 1, "the pause left members on v1: {before:?}");
    let out = status("fleet-pause", false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("phase      paused"), "{text}");

    let out = operator("resume", "fleet-pause");
    assert_eq!(out.status.code(), Some(0));
    for a in &agents {
        a.wait_serving("2", T * 2);
    }
    wait_rollout("fleet-pause", "done after the resume", |r| {
        r["phase"] == "done"
    });
}

#[test]
fn on_failure_rollback_returns_the_updated_members_to_the_previous_release() {
    let fx = fixture();
    // m1 and m2 go first; m3's pre_swap hook refuses version 2, so m3
    // fails once the others run it.
    let deploy = "\n[deploy]\non_failure = \"rollback\"\norder = [\"m1\", \"m2\", \"m3\"]\n";
    let mut agents = members("fleet-back", deploy);
    let hook =
        "\n[hooks]\npre_swap = [\"/bin/sh\", \"-c\", \"test \\\"$CAIRN_NEW_VERSION\\\" != 2\"]\n";
    let text = std::fs::read_to_string(&agents[2].config).unwrap();
    std::fs::write(&agents[2].config, format!("{text}{hook}")).unwrap();
    start_all(&mut agents, "fleet-back");

    let watcher = Watcher::start(&agents);
    fx.promote(&fx.v2, "fleet-back", "ci", None);
    let back = wait_rollout("fleet-back", "rolled back", |r| r["phase"] == "rolled-back");
    assert_eq!(back["halted"]["member"], "m3", "{back}");
    assert_eq!(back["rolled_back"], 2, "{back}");
    for a in &agents {
        let s = a.wait_for("back on v1", T, |s| {
            s["member"]["version"] == "1"
                && s["member"]["health"] == "healthy"
                && s["processes"].as_array().is_some_and(|p| p.len() == 1)
        });
        assert_eq!(a.version().as_deref(), Some("1"), "{s}");
    }
    let seen = watcher.finish();
    assert!(
        seen.failures.is_empty(),
        "every member kept serving: {seen:?}"
    );
    assert_eq!(
        seen.most_swapping, 1,
        "one at a time, back as well: {seen:?}"
    );
    for (i, a) in agents.iter().enumerate().take(2) {
        assert!(went(&seen, i, &["1", "2", "1"]), "m{}: {seen:?}", i + 1);
        let s = a.status().unwrap();
        assert_eq!(s["counters"]["swaps"], 2, "v1, then v2: {s}");
        assert_eq!(s["counters"]["rollbacks"], 1, "then back to v1: {s}");
    }
    assert_eq!(seen.versions[2], ["1"], "m3 never ran v2: {seen:?}");

    let out = status("fleet-back", false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("phase      rolled-back"), "{text}");
    assert!(text.contains("halted     m3: "), "{text}");
}

#[test]
fn a_member_joining_mid_rollout_takes_its_turn() {
    let fx = fixture();
    let pinned = "\n[deploy]\norder = [\"m1\", \"m2\"]\n";
    let mut agents = members("fleet-join", pinned);
    let mut late = agents.pop().unwrap();
    start_all(&mut agents, "fleet-join");

    fx.promote(&fx.v2, "fleet-join", "ci", None);
    agents[0].wait_serving("2", T);
    // m3 joins while m2 has not had its turn: its first release is the
    // rollout's target, under a slot like everyone's.
    late.start();
    agents.push(late);
    for a in &agents {
        a.wait_serving("2", T * 2);
    }
    let done = wait_rollout("fleet-join", "done", |r| r["phase"] == "done");
    assert!(done["slots"].as_array().unwrap().is_empty(), "{done}");
    let m3 = agents[2].status().unwrap();
    assert_eq!(
        m3["counters"]["swaps"], 1,
        "m3 started on v2 directly: {m3}"
    );
    let out = status("fleet-join", true);
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["rollouts"][0]["updated"].as_array().unwrap().len(),
        3,
        "{json}"
    );
}
