//! A rollout's gates with real agents: a `check` command that fails until
//! it passes, a `freeze` window over the promotion, and a `fleet` gate on
//! another service's deployment set. Each holds the next wave, `cairn
//! status` (text and `--json`) names what the rollout waits on, and the
//! rollout completes once the gate opens.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::fixture::fixture;
use crate::fleet::{members, start_all, status, wait_rollout, FLEET, T};
use crate::harness::{eventually, Options, TestAgent};

/// `cairn status` of `set` as text: its exit code and output.
fn status_text(set: &str) -> (Option<i32>, String) {
    let out = status(set, false);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
    )
}

/// `cairn --json status` of `set`: its exit code and the first rollout.
fn status_json(set: &str) -> (Option<i32>, Value) {
    let out: Output = status(set, true);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), json["rollouts"][0].clone())
}

/// Waits until `cairn status` of `set` says the rollout waits on a gate
/// whose words start with `gate`; returns the text and the JSON.
fn wait_gate_shown(set: &str, gate: &str) -> (String, Value) {
    let mut last = (None, String::new());
    let shown = eventually(T, || {
        last = status_text(set);
        last.1
            .lines()
            .any(|l| l.starts_with("waits on   ") && l[11..].starts_with(gate))
    });
    assert!(shown, "status never showed the wait on {gate}: {last:?}");
    assert_eq!(
        last.0,
        Some(0),
        "waiting on a gate is no failure: {}",
        last.1
    );
    let (code, json) = status_json(set);
    assert_eq!(code, Some(0), "{json}");
    (last.1, json)
}

fn versions(agents: &[TestAgent]) -> Vec<Option<String>> {
    agents.iter().map(TestAgent::version).collect()
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// A TOML date-time (RFC 3339, UTC) for `secs` Unix seconds.
fn toml_time(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The number of times the check script ran.
fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_failing_check_holds_the_next_wave_until_it_passes() {
    let fx = fixture();
    let set = "gate-check";
    let dir = fx.root.join("tests").join("gate-check-script");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Passes while the file `pass` exists; counts every run.
    let script = dir.join("check.sh");
    std::fs::write(
        &script,
        format!(
            "echo run >> {runs:?}\ntest -e {pass:?}\n",
            runs = dir.join("runs"),
            pass = dir.join("pass"),
        ),
    )
    .unwrap();
    std::fs::write(dir.join("pass"), "").unwrap();
    let deploy = format!(
        "\n[deploy]\ngates = [{{ check = [\"/bin/sh\", {script:?}], timeout = \"5s\" }}]\n"
    );
    let mut agents = members(set, &deploy);
    start_all(&mut agents, set);
    let before = runs(&dir);
    assert!(before >= 3, "the check ran before each of v1's waves");

    std::fs::remove_file(dir.join("pass")).unwrap();
    fx.promote(&fx.v2, set, "ci", None);
    // It fails, and runs again a second later (`check_retry`), a few times.
    let failed_twice = eventually(T, || runs(&dir) >= before + 2);
    assert!(failed_twice, "the check did not run again after failing");
    let gate = format!(
        "check `/bin/sh {}` (failed; runs again at ",
        script.display()
    );
    let (text, json) = wait_gate_shown(set, &gate);
    assert!(text.contains("phase      rolling"), "{text}");
    assert!(
        text.contains("members    3: 0 updated, 0 updating, 3 pending, 0 failed"),
        "{text}"
    );
    assert!(
        json["gates"][0].as_str().unwrap().starts_with(&gate),
        "{json}"
    );
    assert_eq!(json["wave"], 0, "no wave started: {json}");
    assert!(json["slots"].as_array().unwrap().is_empty(), "{json}");
    assert_eq!(versions(&agents), vec![Some("1".to_string()); 3]);
    for a in &agents {
        let s = a.status().unwrap();
        assert_eq!(s["counters"]["swaps"], 1, "only v1 so far: {s}");
    }

    std::fs::write(dir.join("pass"), "").unwrap();
    for a in &agents {
        a.wait_serving("2", T * 2);
    }
    let done = wait_rollout(set, "done on v2", |r| r["phase"] == "done");
    assert_eq!(done["waves"].as_array().unwrap().len(), 3, "{done}");
    assert!(done["gates"].as_array().unwrap().is_empty(), "{done}");
    assert!(
        runs(&dir) >= before + 2 + 3,
        "the check passed before each of v2's three waves"
    );
    let (code, text) = status_text(set);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("waits on"), "{text}");
}

#[test]
fn no_wave_starts_inside_a_freeze_window_and_the_rollout_proceeds_after_it() {
    let fx = fixture();
    let set = "gate-freeze";
    let mut agents = members(set, "");
    start_all(&mut agents, set);

    // The set's plan gains a freeze window from a minute ago until 12 s
    // from now; each agent restarts with it (its service keeps running).
    let now = unix_now().as_secs();
    let until = now + 12;
    let freeze = format!(
        "\n[deploy]\ngates = [{{ freeze = {{ from = {}, until = {} }} }}]\n",
        toml_time(now - 60),
        toml_time(until)
    );
    for a in agents.iter_mut() {
        assert_eq!(a.signal_and_wait(libc::SIGUSR2).code(), Some(0));
        let text = std::fs::read_to_string(&a.config).unwrap();
        std::fs::write(&a.config, format!("{text}{freeze}")).unwrap();
        a.start();
    }
    for a in &agents {
        a.wait_serving("1", T);
    }
    fx.promote(&fx.v2, set, "ci", None);
    let words = format!(
        "freeze from {} until {}",
        toml_time(now - 60),
        toml_time(until)
    );
    let (text, json) = wait_gate_shown(set, &words);
    assert!(unix_now().as_secs() < until, "the test was too slow");
    assert!(text.contains("3 pending"), "{text}");
    assert_eq!(json["gates"][0], words.as_str(), "{json}");
    assert_eq!(json["wave"], 0, "{json}");
    assert!(json["slots"].as_array().unwrap().is_empty(), "{json}");

    for a in &agents {
        let s = a.wait_serving("2", T * 2);
        let started = s["last_update"]["started"].as_u64().unwrap();
        assert!(
            started >= until * 1000,
            "no update started before the window ended ({until}): {s}"
        );
    }
    let done = wait_rollout(set, "done on v2", |r| r["phase"] == "done");
    assert!(done["gates"].as_array().unwrap().is_empty(), "{done}");
    let (code, text) = status_text(set);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("phase      done"), "{text}");
}

#[test]
fn a_fleet_gate_waits_for_the_other_set_healthy_on_the_named_release() {
    let fx = fixture();
    // The other service's set: one agent of `other-hello`, on its 1.
    let mut db = TestAgent::new(
        "gate-db",
        Options {
            service: Some("other-hello".into()),
            extra: FLEET.into(),
            ..Options::default()
        },
    );
    db.start();
    fx.promote(&fx.other, "gate-db", "ci", None);
    db.wait_serving("1", T);

    // This set waits for other-hello/gate-db healthy on its 2.
    let set = "gate-fleet";
    let deploy = format!(
        "\n[deploy]\ngates = [{{ fleet = \"other-hello/gate-db\", release = {:?} }}]\n",
        fx.other2
    );
    let mut agents = members(set, &deploy);
    for a in agents.iter_mut() {
        a.start();
    }
    fx.promote(&fx.v1, set, "ci", None);
    let words = format!("fleet other-hello/gate-db healthy on {}", fx.other2);
    let (text, json) = wait_gate_shown(set, &words);
    assert!(text.contains("3 pending"), "{text}");
    assert_eq!(json["gates"][0], words.as_str(), "{json}");
    // The other set is done, but on its 1: nothing moves.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(versions(&agents), vec![None; 3], "no member started v1");
    let (_, json) = status_json(set);
    assert_eq!(json["wave"], 0, "{json}");

    fx.promote(&fx.other2, "gate-db", "ci", None);
    db.wait_serving("2", T);
    for a in &agents {
        a.wait_serving("1", T * 2);
    }
    let done = wait_rollout(set, "done on v1", |r| r["phase"] == "done");
    assert!(done["gates"].as_array().unwrap().is_empty(), "{done}");
    let (code, text) = status_text(set);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("waits on"), "{text}");
}
