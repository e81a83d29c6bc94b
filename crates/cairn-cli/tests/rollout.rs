//! Rollouts from the command line, with the real binary: a release carries
//! its `[deploy]`, and an operator pauses, resumes and aborts a set's
//! rollout record, refused with the reason when the rollout is past that.

mod support;

use cairn_digest::Digest;
use cairn_rollout::{Plan, RolloutRecord};
use support::project::Project;

/// The rollout record (or any ref) `name` of `c`'s store.
fn get(c: &Project, name: &str) -> serde_json::Value {
    c.json(&["ref", "get", name])
}

#[test]
fn a_release_carries_its_deploy_table_and_one_without_carries_none() {
    let c = Project::example("busybox-hello");
    c.setup("make-rootfs.sh");
    c.ok(&["key", "generate", "ci"]);
    let show = |release: &str| -> serde_json::Value {
        serde_json::from_str(&c.ok(&["--json", "release", "show", release])).unwrap()
    };

    let plain = c.ok(&["release", "--key", "ci", "--version", "1"]);
    assert!(show(&plain)["document"].get("deploy").is_none());

    let recipe = c.dir.join("cairn.toml");
    let mut text = std::fs::read_to_string(&recipe).unwrap();
    text.push_str(
        "\n[deploy]\nstrategy = \"canary\"\nmax_unavailable = \"10%\"\n\
         canary = { count = 2, bake = \"10m\" }\non_failure = \"rollback\"\n",
    );
    std::fs::write(&recipe, text).unwrap();
    let planned = c.ok(&["release", "--key", "ci", "--version", "2"]);
    let deploy = show(&planned)["document"]["deploy"].clone();
    assert_eq!(
        deploy,
        serde_json::json!({"strategy": "canary", "max_unavailable": "10%",
            "canary": {"count": 2, "bake": "10m"}, "on_failure": "rollback", "gates": []})
    );
    let plan = Plan::from_json(&deploy).unwrap();
    assert_eq!(plan.capacity(50), 5);
}

fn rollout(phase: &str) -> String {
    let json = serde_json::json!({
        "target": Digest::of(b"release 2"), "sequence": 2, "strategy": Plan::default(),
        "phase": phase, "capacity": 1, "lease": 80, "created": 1, "updated": 1,
        "slots": [{"member": "host-a", "expires": 99}],
    });
    String::from_utf8(
        serde_json::from_value::<RolloutRecord>(json)
            .unwrap()
            .to_json(),
    )
    .unwrap()
}

#[test]
fn an_operator_pauses_resumes_and_aborts_a_rollout() {
    let c = Project::empty("busybox-hello");
    let name = "fleet/hello/eu/rollout";
    // The record names a release this store does not hold (a fleet record
    // is read, never walked for its content here).
    c.ok(&[
        "ref",
        "set",
        name,
        &rollout("rolling"),
        "--create",
        "--allow-dangling",
    ]);
    c.ok(&[
        "ref",
        "set",
        "fleet/hello/eu/members/host-a",
        "{}",
        "--create",
    ]);

    assert_eq!(
        c.ok(&["rollout", "pause", "hello"]),
        "hello/eu: rolling -> paused"
    );
    let paused = get(&c, name);
    let record: serde_json::Value =
        serde_json::from_str(paused["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        (record["phase"].as_str(), record["resume_to"].as_str()),
        (Some("paused"), Some("rolling"))
    );
    assert_eq!(
        record["slots"][0]["member"], "host-a",
        "slots held stay held"
    );

    let out: serde_json::Value =
        serde_json::from_str(&c.ok(&["--json", "rollout", "resume", "hello", "--set", "eu"]))
            .unwrap();
    assert_eq!(
        out,
        serde_json::json!([{"service": "hello", "set": "eu", "from": "paused", "to": "rolling"}])
    );
    assert_eq!(
        c.ok(&["rollout", "abort", "hello"]),
        "hello/eu: rolling -> aborted"
    );

    let before = get(&c, name)["version"].clone();
    let err = c.fails(&["rollout", "resume", "hello"]);
    assert!(
        err.contains("hello/eu: the rollout is aborted: an aborted rollout does not resume; promote the release again to retry it"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(get(&c, name)["version"], before, "nothing written");
}

#[test]
fn a_missing_or_unreadable_rollout_is_named() {
    let c = Project::empty("busybox-hello");
    let err = c.fails(&["rollout", "pause", "hello"]);
    assert!(err.contains("no store at"), "{err}");
    // A store with another service's rollout only.
    c.ok(&["ref", "set", "fleet/db/eu/rollout", "{}", "--create"]);
    let err = c.fails(&["rollout", "pause", "hello"]);
    assert!(err.contains("hello has no rollout"), "{err}");
    let err = c.fails(&["rollout", "pause", "hello", "--set", "eu"]);
    assert!(
        err.contains("fleet/hello/eu/rollout does not exist"),
        "{err}"
    );
    c.ok(&[
        "ref",
        "set",
        "fleet/hello/eu/rollout",
        "{\"phase\": 3}",
        "--create",
    ]);
    let err = c.fails(&["rollout", "pause", "hello"]);
    assert!(
        err.contains("fleet record fleet/hello/eu/rollout is not valid"),
        "{err}"
    );
    let err = c.fails(&["rollout", "resume", "hello", "--set", "done"]);
    assert!(
        err.contains("fleet/hello/done/rollout does not exist"),
        "{err}"
    );
    c.ok(&[
        "ref",
        "set",
        "fleet/hello/us/rollout",
        &rollout("done"),
        "--create",
        "--allow-dangling",
    ]);
    let err = c.fails(&["rollout", "pause", "hello", "--set", "us"]);
    assert!(
        err.contains("hello/us: the rollout is done: only a rollout in progress can be paused"),
        "{err}"
    );
}
