//! The agent attacked: by a peer with write access to the store (a rollout
//! record claiming a statement nobody signed, a store that answers a fetch
//! never), and by a local user (reading what the service logs).

use std::time::Duration;

use serde_json::{json, Value};

use crate::fixture::{fixture, SERVICE};
use crate::fleet::{rollout, serving_v1, wait_rollout, FLEET, T};
use crate::harness::{eventually, free_port, hex, Options, Server, TestAgent};
use crate::trickle::Trickle;

/// A release's digest as fleet records write it (hash and size; the size
/// is that of its blob in the fixture's store).
pub(crate) fn digest(release: &str) -> Value {
    let hex = hex(release);
    let blob = fixture().store.join("blobs").join(&hex[..2]).join(hex);
    json!({"hash": release, "size": std::fs::metadata(blob).unwrap().len()})
}

#[test]
fn a_rollout_record_claiming_an_unsigned_statement_neither_holds_nor_steers_the_agent() {
    let fx = fixture();
    let set = "unsigned-claim";
    let a = serving_v1(set);
    let first = wait_rollout(set, "the rollout of #1, done", |r| {
        r["sequence"] == 1 && r["phase"] == "done"
    });
    assert!(
        first["statement"]
            .as_str()
            .is_some_and(|s| s.contains("signatures")),
        "the record carries the signed statement: {first}"
    );

    // A peer with write access claims statement #99 of the broken v3,
    // which no one signed.
    let name = format!("fleet/{SERVICE}/{set}/rollout");
    let mut claim = first.clone();
    claim["sequence"] = 99.into();
    claim["target"] = digest(&fx.v3);
    claim.as_object_mut().unwrap().remove("statement");
    fx.set_ref(&name, &claim.to_string());
    assert_eq!(rollout(set).unwrap()["sequence"], 99);

    fx.promote(&fx.v2, set, "ci", None);
    a.wait_serving("2", T);
    let replaced = wait_rollout(set, "the rollout of #2", |r| r["sequence"] == 2);
    assert_eq!(replaced["target"], digest(&fx.v2));
    assert!(replaced["statement"].is_string(), "{replaced}");
    let log = a.log();
    assert!(
        log.contains("claims statement #99") && log.contains("carries no signed statement"),
        "{log}"
    );
    assert_eq!(a.version().as_deref(), Some("2"), "never steered to v3");
}

#[test]
fn a_service_killed_while_a_fetch_trickles_is_restarted_and_the_fetch_given_up() {
    let fx = fixture();
    let name = "trickle";
    let token = fx.agent_token("agent-trickle");
    let upstream = free_port();
    let _server = Server::start(&fx.store, upstream);
    let store = Trickle::start(upstream);
    let mut a = TestAgent::new(
        name,
        Options {
            store: Some(format!("http://{}", store.addr)),
            token: Some(token),
            top: "fetch_silence = \"3s\"".into(),
            ..Options::default()
        },
    );
    a.start();
    fx.promote(&fx.v1, name, "ci", None);
    a.wait_serving("1", T);

    // From now on the store answers v2's statement, release and artifact
    // root (so it is accepted), then trickles every other blob.
    let artifact = fx.artifact(&fx.v2);
    store.starve(&[hex(&fx.v2), hex(&artifact)]);
    fx.promote(&fx.v2, name, "ci", None);
    a.wait_for("the fetch of v2 under way", T, |s| {
        s["member"]["state"] == "fetching"
    });
    let killed = a.service_pids();
    assert_eq!(killed.len(), 1, "{killed:?}");
    // SAFETY: kill(2) of the service this test's agent started.
    unsafe { libc::kill(killed[0], libc::SIGKILL) };
    let restarted = eventually(Duration::from_secs(20), || {
        let pids = a.service_pids();
        pids.len() == 1 && pids[0] != killed[0] && a.version().as_deref() == Some("1")
    });
    assert!(
        restarted,
        "the service was not restarted while the fetch hung:\n{}",
        a.log()
    );
    let s = a.wait_for("the silent fetch given up", T, |s| {
        s["counters"]["fetch_errors"].as_u64() >= Some(1)
    });
    assert!(s["counters"]["restarts"].as_u64() >= Some(1), "{s}");
    let log = a.log();
    assert!(
        log.contains("no blob arrived from the store in 3s") && log.contains("retrying in"),
        "{log}"
    );

    // Given up, not for good: once the store answers, the retry gets v2.
    store.relent();
    a.wait_serving("2", Duration::from_secs(90));

    // What the service logged (two generations' pumps, a restart) and the
    // agent's state are the agent's user's alone.
    let logs = a.state.join("logs");
    assert_eq!(mode(&logs), 0o700);
    let files: Vec<_> = std::fs::read_dir(&logs).unwrap().flatten().collect();
    assert!(!files.is_empty());
    for f in files {
        assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
    }
    assert_eq!(mode(&a.state.join("state.json")), 0o600);
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn a_trickled_rollout_record_read_is_given_up_and_the_member_moves_on() {
    let fx = fixture();
    let set = "trickled-record";
    let token = fx.agent_token("agent-trickled-record");
    let upstream = free_port();
    let _server = Server::start(&fx.store, upstream);
    let store = Trickle::start(upstream);
    let mut a = TestAgent::new(
        set,
        Options {
            store: Some(format!("http://{}", store.addr)),
            token: Some(token),
            extra: FLEET.to_string(),
            ..Options::default()
        },
    );
    a.start();
    fx.promote(&fx.v1, set, "ci", None);
    a.wait_serving("1", T);

    // The rollout record trickles while v2 is promoted; then the store
    // answers again, but a read already trickling never ends by itself.
    store.starve_under(&format!("/v1/refs/fleet/{SERVICE}/{set}/rollout"), &[]);
    fx.promote(&fx.v2, set, "ci", None);
    a.wait_for("v2 fetched, waiting for the rollout", T, |s| {
        s["member"]["state"] == "waiting"
    });
    std::thread::sleep(Duration::from_secs(2));
    store.relent();
    a.wait_serving("2", T);
    let log = a.log();
    assert!(
        log.contains("reading the rollout record at the followed store: no answer in 15s"),
        "{log}"
    );
}
