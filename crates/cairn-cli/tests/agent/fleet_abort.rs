//! `cairn rollout abort` during a live rollout of real agents: no member
//! starts an update after it, the members already updated keep what they
//! run (an abort is not a rollback), status says so, the abort cannot be
//! resumed, and a newer channel statement starts a fresh rollout.

use std::time::Duration;

use serde_json::Value;

use crate::fixture::fixture;
use crate::fleet::{
    members, operated, operator, rollout, start_all, status, swaps_finish, wait_rollout, T,
};

#[test]
fn an_aborted_rollout_starts_no_update_and_a_newer_statement_starts_afresh() {
    let fx = fixture();
    let set = "fleet-abort";
    let mut agents = members(set, "\n[deploy]\norder = [\"m1\", \"m2\", \"m3\"]\n");
    start_all(&mut agents, set);

    fx.promote(&fx.v2, set, "ci", None);
    agents[0].wait_serving("2", T);
    operated("abort", set, "rolling -> aborted");

    // A swap under way when the abort landed finishes; then nothing moves.
    assert!(
        swaps_finish(&agents),
        "a swap under way at the abort did not finish"
    );
    let versions = || -> Vec<Option<String>> { agents.iter().map(|a| a.version()).collect() };
    let before = versions();
    let granted = rollout(set).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(versions(), before, "no member moved after the abort");
    let after = rollout(set).unwrap();
    assert_eq!(after["wave"], granted["wave"], "no wave granted: {after}");
    assert!(
        !after["slots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["member"] == "m3"),
        "no slot for m3: {after}"
    );
    assert_eq!(before[0].as_deref(), Some("2"), "m1 keeps v2: {before:?}");
    assert_eq!(
        before[2].as_deref(),
        Some("1"),
        "m3 never started: {before:?}"
    );
    let m3 = agents[2].status().unwrap();
    assert_eq!(m3["counters"]["swaps"], 1, "m3 ran v1 only: {m3}");
    assert_eq!(m3["counters"]["rollbacks"], 0, "{m3}");
    let m1 = agents[0].status().unwrap();
    assert_eq!(
        m1["counters"]["rollbacks"], 0,
        "an abort rolls nothing back: {m1}"
    );

    let record = rollout(set).unwrap();
    assert_eq!(record["phase"], "aborted", "{record}");
    assert_eq!(record["sequence"], 2, "{record}");
    assert_eq!(
        record["halted"]["reason"], "aborted by an operator",
        "{record}"
    );
    let out = status(set, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "an abort is no failure: {text}");
    assert!(text.contains("phase      aborted"), "{text}");
    assert!(text.contains("halted     aborted by an operator"), "{text}");
    let out = status(set, true);
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["rollouts"][0]["phase"], "aborted", "{json}");
    assert!(
        json["rollouts"][0]["pending"]
            .as_array()
            .unwrap()
            .contains(&Value::from("m3")),
        "{json}"
    );

    // Neither resumed nor aborted again.
    let out = operator("resume", set);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("http-hello/fleet-abort: the rollout is aborted: an aborted rollout does not resume; promote the release again to retry it"),
        "{err}"
    );
    let out = operator("abort", set);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("there is nothing to abort"), "{err}");
    assert_eq!(rollout(set).unwrap()["phase"], "aborted");

    // A newer statement of the same release: a fresh rollout, to the end.
    fx.promote(&fx.v2, set, "ci", None);
    for a in &agents {
        a.wait_serving("2", T * 2);
    }
    let done = wait_rollout(set, "done on statement 3", |r| {
        r["phase"] == "done" && r["sequence"] == 3
    });
    assert!(done["halted"].is_null(), "{done}");
    let m1 = agents[0].status().unwrap();
    assert_eq!(m1["counters"]["swaps"], 2, "m1 was on v2 already: {m1}");
    let out = status(set, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("phase      done"), "{text}");
    assert!(
        text.contains("members    3: 3 updated, 0 updating, 0 pending, 0 failed"),
        "{text}"
    );
}
