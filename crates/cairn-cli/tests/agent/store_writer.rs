//! What someone who may write the store, but holds no signing key, can
//! make a real agent do: no more than its signed release and its own
//! configuration allow. A rollout record rolling back at the accepted
//! sequence does not move a member whose plan halts; a `fleet` gate does
//! not open on a rollout record no trusted key signed; a store sending
//! one blob just within every `fetch_silence` does not stretch a fetch
//! past its minimum rate; a check command written into the rollout record
//! is never run.

use std::time::Duration;

use serde_json::Value;

use crate::fixture::{fixture, SERVICE};
use crate::fleet::{rollout, serving_v1, status, wait_rollout, FLEET, T};
use crate::harness::{eventually, free_port, hex, Options, Server, TestAgent};
use crate::hostile::digest;
use crate::trickle::Trickle;

/// `cairn status` of `set` as text.
fn status_text(set: &str) -> String {
    String::from_utf8_lossy(&status(set, false).stdout).into_owned()
}

#[test]
fn a_record_turning_a_halt_into_a_rollback_does_not_move_a_member_whose_plan_halts() {
    let fx = fixture();
    let set = "forged-rollback";
    let a = serving_v1(set);
    fx.promote(&fx.v2, set, "ci", None);
    a.wait_serving("2", T);
    let done = wait_rollout(set, "done on v2", |r| {
        r["sequence"] == 2 && r["phase"] == "done"
    });
    assert_eq!(done["strategy"]["on_failure"], "halt", "{done}");

    // At the accepted sequence, the record now says a member failed and
    // the plan rolls back: every updated member would return to v1.
    let mut forged = done.clone();
    forged["strategy"]["on_failure"] = "rollback".into();
    forged["phase"] = "rolling-back".into();
    forged["halted"] = serde_json::json!({
        "member": "ghost", "reason": "ghost: failed", "at": done["updated"], "phase": "rolling"
    });
    forged["steward"] = Value::Null;
    fx.set_ref(
        &format!("fleet/{SERVICE}/{set}/rollout"),
        &forged.to_string(),
    );

    let read = eventually(T, || {
        a.log().contains("this member's plan halts on failure")
    });
    assert!(
        read,
        "the forged record was never read as a halt:\n{}",
        a.log()
    );
    // A few of the agent's polls later it still serves v2.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(a.version().as_deref(), Some("2"), "{}", a.log());
    let s = a.status().unwrap();
    assert_eq!(s["counters"]["rollbacks"], 0, "{s}");
    let r = rollout(set).unwrap();
    assert!(
        r["slots"].as_array().unwrap().is_empty(),
        "no rollback slot used: {r}"
    );
}

#[test]
fn a_fleet_gate_stays_closed_on_a_rollout_record_no_trusted_key_signed() {
    let fx = fixture();
    // A real set of `other-hello` on its 1, for a genuine signed statement.
    let src = "forged-gate-src";
    let mut db = TestAgent::new(
        src,
        Options {
            service: Some("other-hello".into()),
            extra: FLEET.into(),
            ..Options::default()
        },
    );
    db.start();
    fx.promote(&fx.other, src, "ci", None);
    db.wait_serving("1", T);
    let (genuine, _) = fx.get_ref(&format!("fleet/other-hello/{src}/rollout"));
    let genuine: Value = serde_json::from_str(&genuine).unwrap();
    assert!(genuine["statement"].is_string(), "{genuine}");

    // The gated-on set's record, written by a store writer: done on
    // other-hello 2, with no statement at all.
    let gated_on = "fleet/other-hello/forged-gate-db/rollout";
    let mut forged = genuine.clone();
    forged["target"] = digest(&fx.other2);
    forged["phase"] = "done".into();
    forged.as_object_mut().unwrap().remove("statement");
    let fx_cairn = |args: &[&str]| crate::fixture::cairn(&fx.store, &fx.keys, &fx.root, args);
    fx_cairn(&["ref", "set", gated_on, &forged.to_string(), "--create"]);

    let set = "forged-gate";
    let mut a = TestAgent::new(
        set,
        Options {
            extra: format!(
                "{FLEET}\n[deploy]\ngates = [{{ fleet = \"other-hello/forged-gate-db\", release = {:?} }}]\n",
                fx.other2
            ),
            ..Options::default()
        },
    );
    a.start();
    fx.promote(&fx.v1, set, "ci", None);
    let wait_shown = |words: &str| {
        let mut last = String::new();
        let shown = eventually(T, || {
            last = status_text(set);
            last.contains(words)
        });
        assert!(shown, "status never said {words:?}: {last}");
        last
    };
    let text = wait_shown("carries no signed statement");
    assert!(
        text.contains(&format!(
            "fleet other-hello/forged-gate-db healthy on {}",
            fx.other2
        )) && text.contains("not believed"),
        "{text}"
    );

    // Now with the genuine statement of other-hello 1 left in, the record
    // tampered to claim 2: still closed, and said so.
    let mut tampered = genuine.clone();
    tampered["target"] = digest(&fx.other2);
    tampered["phase"] = "done".into();
    fx.set_ref(gated_on, &tampered.to_string());
    wait_shown("its statement names release");

    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(a.version(), None, "the gate never opened:\n{}", a.log());
    let r = rollout(set).unwrap();
    assert_eq!(r["wave"], 0, "{r}");
    assert!(r["slots"].as_array().unwrap().is_empty(), "{r}");
}

#[test]
fn a_store_sending_a_blob_within_every_silence_is_given_up_by_its_rate() {
    let fx = fixture();
    let name = "paced-fetch";
    let token = fx.agent_token("agent-paced-fetch");
    let upstream = free_port();
    let _server = Server::start(&fx.store, upstream);
    let store = Trickle::start(upstream);
    let mut a = TestAgent::new(
        name,
        Options {
            store: Some(format!("http://{}", store.addr)),
            token: Some(token),
            // Each blob arrives 4 s after it is asked for, within the
            // 5 s silence; 1 KiB a second over 3 s is a single blob.
            top: "fetch_silence = \"5s\"\nfetch_min_rate = \"1KiB\"\nfetch_rate_window = \"3s\""
                .into(),
            ..Options::default()
        },
    );
    a.start();
    fx.promote(&fx.v1, name, "ci", None);
    a.wait_serving("1", T);
    let serving = a.service_pids();

    let artifact = fx.artifact(&fx.v2);
    store.pace(Duration::from_secs(4), &[hex(&fx.v2), hex(&artifact)]);
    fx.promote(&fx.v2, name, "ci", None);
    let s = a.wait_for("the paced fetch given up", T, |s| {
        s["counters"]["fetch_errors"].as_u64() >= Some(1)
    });
    let log = a.log();
    assert!(
        log.contains("in the last 3s, under fetch_min_rate 1.0KiB/s")
            && log.contains("retrying in"),
        "{log}"
    );
    assert!(
        !log.contains("no blob arrived"),
        "the rate gave it up, not the silence: {log}"
    );
    // The service ran on, untouched, on v1.
    assert_eq!(a.version().as_deref(), Some("1"), "{s}");
    assert_eq!(a.service_pids(), serving);

    // Given up, not for good: once the store answers, the retry gets v2.
    store.relent();
    a.wait_serving("2", Duration::from_secs(90));
}

#[test]
fn a_check_command_written_into_the_rollout_record_is_never_run() {
    let fx = fixture();
    let set = "forged-check";
    let a = serving_v1(set);
    let done = wait_rollout(set, "done on v1", |r| {
        r["sequence"] == 1 && r["phase"] == "done"
    });

    // The record, rewritten at the accepted sequence: back to its first
    // wave, with a check gate whose command leaves a file behind. The
    // agent, its steward, would run it before the wave.
    let planted = fx.root.join(format!("{set}-planted"));
    let _ = std::fs::remove_file(&planted);
    let mut forged = done.clone();
    forged["phase"] = "rolling".into();
    forged["cursor"] = Value::Null;
    forged["steward"] = Value::Null;
    forged["done"] = 0.into();
    forged["waves"] = serde_json::json!([]);
    forged["wave"] = 0.into();
    forged["strategy"]["gates"] = serde_json::json!([{
        "check": ["/bin/sh", "-c", format!("touch {}", planted.display())],
        "timeout": "5s"
    }]);
    fx.set_ref(
        &format!("fleet/{SERVICE}/{set}/rollout"),
        &forged.to_string(),
    );

    // The wave goes ahead (its only member is on the target), the command
    // never having run.
    let again = wait_rollout(set, "done again, its member passed", |r| {
        r["phase"] == "done" && !r["cursor"].is_null() && r["done"] == 1
    });
    assert!(
        !planted.exists(),
        "the record's command ran: {again}\n{}",
        a.log()
    );
    assert_eq!(a.version().as_deref(), Some("1"));
}

#[test]
fn a_record_widening_the_capacity_does_not_make_a_member_swap_beside_another() {
    let fx = fixture();
    let set = "forged-capacity";
    let mut a = serving_v1(set);
    // Restarted (its service kept running) with one at a time (the
    // default) and a check that never passes: no wave of this member's
    // own making starts.
    assert_eq!(a.signal_and_wait(libc::SIGUSR2).code(), Some(0));
    let text = std::fs::read_to_string(&a.config).unwrap();
    let check = "\n[deploy]\ngates = [{ check = [\"/bin/false\"], timeout = \"5s\" }]\n";
    std::fs::write(&a.config, format!("{text}{check}")).unwrap();
    a.start();
    a.wait_serving("1", T);
    fx.promote(&fx.v2, set, "ci", None);
    let held = wait_rollout(set, "#2 held by its check", |r| {
        r["sequence"] == 2
            && r["gates"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g.as_str().unwrap_or("").contains("false")))
    });

    // The record now lets five update at once, drops the check and holds
    // a slot for another member besides this one's.
    let now = held["updated"].as_i64().unwrap();
    let mut forged = held.clone();
    forged["strategy"]["max_unavailable"] = 5.into();
    forged["strategy"]["gates"] = serde_json::json!([]);
    forged["gates"] = serde_json::json!([]);
    forged["capacity"] = 5.into();
    forged["steward"] = Value::Null;
    forged["slots"] = serde_json::json!([
        {"member": "a1", "expires": now + 60, "wave": 1},
        {"member": "ghost", "expires": now + 60, "wave": 1},
    ]);
    fx.set_ref(
        &format!("fleet/{SERVICE}/{set}/rollout"),
        &forged.to_string(),
    );

    let read = eventually(T, || {
        a.log()
            .contains("the rollout record holds 2 slots; this member's plan allows 1 at once")
    });
    assert!(read, "the widened record was never refused:\n{}", a.log());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(a.version().as_deref(), Some("1"), "{}", a.log());
    let r = rollout(set).unwrap();
    let slots = r["slots"].as_array().unwrap();
    assert!(
        slots.iter().all(|s| s["member"] != "a1"),
        "the granted slot was given back: {r}"
    );
}
