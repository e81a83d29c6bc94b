//! `cairn status` on who is away, by the protocol's rule: a member silent
//! past the agents' member timeout plus the margin is away (and passed
//! over when its turn comes); once back, it is present again and counted
//! by its record, even while the slot it claimed for its missed turn is
//! still listed in the finished rollout.

use std::time::Duration;

use serde_json::Value;

use crate::fixture::fixture;
use crate::fleet::{members, rollout, start_all, status_with, wait_rollout, T, TIMING};

#[test]
fn a_member_away_at_its_turn_is_shown_away_then_back_and_updated() {
    let fx = fixture();
    let set = "fleet-away";
    let mut agents = members(set, "\n[deploy]\norder = [\"m1\", \"m2\", \"m3\"]\n");
    start_all(&mut agents, set);

    // m3's agent dies (its service keeps serving v1) and stays silent
    // past the member timeout and margin (4 s + 2 × 0.5 s + 1 s).
    agents[2].kill9();
    std::thread::sleep(Duration::from_secs(7));
    let out = status_with(set, false, TIMING);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("\naway       m3"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(" m3 ") && l.contains("s ago (away)")),
        "the member table marks m3 away: {text}"
    );
    // With the agents' default timing (3 min), m3 is not away yet.
    let out = status_with(set, false, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("\naway "), "{text}");

    fx.promote(&fx.v2, set, "ci", None);
    let done = wait_rollout(set, "done without m3", |r| {
        r["phase"] == "done" && r["sequence"] == 2
    });
    assert_eq!(done["away"], 1, "m3 was passed over: {done}");
    assert_eq!(agents[2].version().as_deref(), Some("1"));
    let out = status_with(set, true, TIMING);
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let story = &json["rollouts"][0];
    assert_eq!(story["away"], serde_json::json!(["m3"]), "{json}");
    assert_eq!(story["pending"], serde_json::json!(["m3"]), "{json}");
    assert_eq!(story["updated"].as_array().unwrap().len(), 2, "{json}");
    let m3 = json["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["agent"] == "m3")
        .unwrap();
    assert_eq!(m3["away"], true, "{json}");

    // m3 comes back and takes its missed turn under a slot it claims; the
    // rollout is done, so no steward releases that slot.
    agents[2].start();
    agents[2].wait_serving("2", T * 2);
    let record = rollout(set).unwrap();
    let slot = &record["slots"][0];
    assert_eq!(slot["member"], "m3", "m3's slot is still listed: {record}");
    let out = status_with(set, false, TIMING);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("members    3: 3 updated, 0 updating, 0 pending, 0 failed"),
        "m3 is back and updated: {text}"
    );
    assert!(!text.contains("\naway "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("slot       m3 ")
                && l.ends_with("; m3 finished, not released yet)")),
        "{text}"
    );
    let out = status_with(set, true, TIMING);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let story = &json["rollouts"][0];
    assert_eq!(story["away"], serde_json::json!([]), "{json}");
    assert_eq!(story["updating"], serde_json::json!([]), "{json}");
    assert_eq!(story["slots"][0]["holder"], "finished", "{json}");
    assert_eq!(story["slots"][0]["expired"], false, "{json}");
}
