//! The agent killed with SIGKILL at each step of a swap, and a service
//! that keeps crashing.

use std::time::Duration;

use crate::fixture::fixture;
use crate::harness::{eventually, hex, Options, TestAgent};

const T: Duration = Duration::from_secs(30);

/// Runs v1, has the agent kill itself at `point` while swapping to v2,
/// checks what was left, restarts it and checks it converges on v2 with
/// exactly one process.
fn killed_at(point: &str, left: impl Fn(&TestAgent)) {
    let fx = fixture();
    let name = format!("kill-{point}");
    let mut a = TestAgent::new(&name, Options::default());
    a.start();
    fx.promote(&fx.v1, &name, "ci", None);
    a.wait_serving("1", T);
    // Hand v1 over to an agent that will die at `point` (it adopts v1).
    assert!(a.signal_and_wait(libc::SIGUSR2).success());
    a.start_with(&[("CAIRN_AGENT_CRASH_AT", point)]);
    a.wait_serving("1", T);
    let v1_pids = a.service_pids();
    assert_eq!(v1_pids.len(), 1);
    fx.promote(&fx.v2, &name, "ci", None);
    let status = a.wait_exit(T);
    assert!(!status.success(), "the agent died at {point}: {status}");
    left(&a);
    assert_eq!(
        a.version().as_deref().map(|v| v == "1" || v == "2"),
        Some(true),
        "something answers while the agent is dead"
    );

    a.start();
    a.wait_serving("2", T);
    assert!(
        eventually(Duration::from_secs(10), || a.service_pids().len() == 1),
        "exactly one service process: {:?}\n{}",
        a.service_pids(),
        a.log()
    );
    assert_eq!(a.version().as_deref(), Some("2"));
    let state = a.state_json();
    assert_eq!(state["processes"].as_array().unwrap().len(), 1, "{state}");
    assert_eq!(state["processes"][0]["role"], "serving");
    let current = std::fs::read_link(a.state.join("current")).unwrap();
    assert!(current.to_str().unwrap().ends_with(hex(&fx.v2)));
}

#[test]
fn killed_after_the_fetch() {
    killed_at("fetched", |a| {
        assert_eq!(a.service_pids().len(), 1, "only v1 runs");
        assert!(
            a.has_blob(&fixture().artifact(&fixture().v2)),
            "v2 was fetched"
        );
        let current = std::fs::read_link(a.state.join("current")).unwrap();
        assert!(
            current.to_str().unwrap().ends_with(hex(&fixture().v1)),
            "nothing switched"
        );
    });
}

#[test]
fn killed_after_the_switch() {
    killed_at("switched", |a| {
        assert_eq!(a.service_pids().len(), 1, "only v1 runs");
        let current = std::fs::read_link(a.state.join("current")).unwrap();
        assert!(
            current.to_str().unwrap().ends_with(hex(&fixture().v2)),
            "switched to v2"
        );
    });
}

#[test]
fn killed_after_the_new_process_started() {
    killed_at("started", |a| {
        assert_eq!(a.service_pids().len(), 2, "v1 and v2 both run");
        let roles: Vec<String> = a.state_json()["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["role"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(roles, ["serving", "starting"]);
    });
}

#[test]
fn killed_while_the_old_process_drains() {
    killed_at("draining", |a| {
        let roles: Vec<String> = a.state_json()["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["role"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(roles, ["draining", "serving"]);
    });
}

#[test]
fn killed_from_outside_during_a_health_check() {
    let fx = fixture();
    let mut a = TestAgent::new("kill-outside", Options::default());
    a.start();
    fx.promote(&fx.v2, "kill-outside", "ci", None);
    a.wait_serving("2", T);
    // v3 never becomes healthy: its check runs for 10 s, ample time to
    // find it starting and kill the agent from outside.
    fx.promote(&fx.v3, "kill-outside", "ci", None);
    a.wait_for("v3 starting", T, |s| {
        s["member"]["state"] == "updating" && s["processes"].as_array().unwrap().len() == 2
    });
    a.kill9();
    assert_eq!(a.service_pids().len(), 2);
    a.start();
    // The half-started v3 is stopped at once, v2 keeps serving, and the
    // agent tries v3 again (it had not failed yet) and rolls it back.
    assert!(eventually(T, || a.service_pids().len() == 1), "{}", a.log());
    assert_eq!(a.version().as_deref(), Some("2"));
    a.wait_for("the rollback", T, |s| {
        s["counters"]["rollbacks"] == 1 && s["member"]["state"] == "running"
    });
    assert_eq!(a.service_pids().len(), 1);
    assert_eq!(a.version().as_deref(), Some("2"));
}

#[test]
fn a_service_crashing_in_a_loop_is_restarted_with_backoff() {
    let fx = fixture();
    let extra = "\n[env]\nHELLO_CRASH_AFTER_MS = \"2500\"\n".to_string();
    let mut a = TestAgent::new(
        "crashloop",
        Options {
            extra,
            ..Options::default()
        },
    );
    a.start();
    fx.promote(&fx.v1, "crashloop", "ci", None);
    a.wait_serving("1", T);
    let s = a.wait_for("unhealthy after a crash", T, |s| {
        s["member"]["health"] != "healthy"
            && s["member"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("exit status 3"))
    });
    assert!(
        s["member"]["last_error"]
            .as_str()
            .unwrap()
            .contains("restarting in"),
        "{s}"
    );
    a.wait_for("three restarts", Duration::from_secs(40), |s| {
        s["counters"]["restarts"].as_u64() >= Some(3)
    });
    // The delays grow: 500ms, 1s, 2s.
    let log = a.log();
    let delays: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("restarting in ").nth(1))
        .collect();
    assert!(delays.len() >= 3, "{log}");
    assert_eq!(&delays[..3], ["500ms", "1s", "2s"], "{log}");
    // The agent itself never went down, and it still answers between crashes.
    assert!(a.status().is_some());
}

#[test]
fn a_second_agent_on_the_same_state_is_refused() {
    let fx = fixture();
    let mut a = TestAgent::new("locked", Options::default());
    a.start();
    fx.promote(&fx.v1, "locked", "ci", None);
    a.wait_serving("1", T);
    let out = std::process::Command::new(crate::fixture::CAIRN)
        .args(["agent", "--config"])
        .arg(&a.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another agent is using") && err.contains("its lock is held"),
        "{err}"
    );
    assert_eq!(
        a.service_pids().len(),
        1,
        "the running service was not touched"
    );
}
