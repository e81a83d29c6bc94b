//! What the trust rules refuse: every attack with its reason and nothing
//! changed, sequences already accepted, a two-key channel signed by one.

use crate::support::cli::{text, Machine};
use crate::support::refused;
use crate::{set_mode, tamper_payload, Pipeline, SERVICE};

#[test]
fn attacks_are_refused_with_their_reason_and_change_nothing() {
    let p = Pipeline::new();
    let release = p.release("1.0");
    p.ok(&["promote", &release, "--channel", "prod", "--key", "ops"]);
    let good = p.policy(&["ci", "ops"], 1);
    let before = p.channel_json();

    // A key the policy does not list.
    refused(
        &p.verify_channel(&p.policy(&["ci", "ops2"], 1), &[]),
        1,
        "which the trust policy does not list",
    );
    // Replay of an old statement: not newer than what was accepted.
    refused(
        &p.verify_channel(&good, &["--last-sequence", "1"]),
        1,
        "is not greater than the last accepted sequence 1",
    );

    // Tampered channel payload: the statement now points elsewhere.
    let name = format!("channels/{SERVICE}/prod");
    let stored: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "ref", "get", &name])).unwrap();
    let tampered = tamper_payload(
        stored["value"].as_str().unwrap(),
        "\"sequence\":1",
        "\"sequence\":9",
    );
    p.ok(&[
        "ref",
        "set",
        &name,
        &tampered,
        "--expect",
        stored["version"].as_str().unwrap(),
    ]);
    refused(
        &p.verify_channel(&good, &[]),
        1,
        "does not verify: the payload or signature was altered",
    );
    let restored: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "ref", "get", &name])).unwrap();
    p.ok(&[
        "ref",
        "set",
        &name,
        stored["value"].as_str().unwrap(),
        "--expect",
        restored["version"].as_str().unwrap(),
    ]);

    // Mix and match: a valid statement for staging placed in prod's ref.
    p.ok(&["promote", &release, "--channel", "staging", "--key", "ops"]);
    let staging: serde_json::Value = serde_json::from_str(&p.ok(&[
        "--json",
        "ref",
        "get",
        &format!("channels/{SERVICE}/staging"),
    ]))
    .unwrap();
    let prod: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "ref", "get", &name])).unwrap();
    p.ok(&[
        "ref",
        "set",
        &name,
        staging["value"].as_str().unwrap(),
        "--expect",
        prod["version"].as_str().unwrap(),
    ]);
    refused(
        &p.verify_channel(&good, &[]),
        1,
        "statement is for channel \"staging\", expected \"prod\"",
    );
    let now: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "ref", "get", &name])).unwrap();
    p.ok(&[
        "ref",
        "set",
        &name,
        prod["value"].as_str().unwrap(),
        "--expect",
        now["version"].as_str().unwrap(),
    ]);

    // Tampered release document.
    let release_ref = format!(
        "releases/{SERVICE}/{}",
        release.trim_start_matches("sha256:")
    );
    let rel: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "ref", "get", &release_ref])).unwrap();
    let forged = tamper_payload(
        rel["value"].as_str().unwrap(),
        "\"version\":\"1.0\"",
        "\"version\":\"6.6\"",
    );
    p.ok(&[
        "ref",
        "set",
        &release_ref,
        &forged,
        "--expect",
        rel["version"].as_str().unwrap(),
    ]);
    refused(
        &p.verify_channel(&good, &[]),
        1,
        "refused channel busybox-hello/prod: release sha256:",
    );
    let now: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "ref", "get", &release_ref])).unwrap();
    p.ok(&[
        "ref",
        "set",
        &release_ref,
        rel["value"].as_str().unwrap(),
        "--expect",
        now["version"].as_str().unwrap(),
    ]);
    let restored = p.verify_channel(&good, &[]);
    assert!(
        restored.status.success(),
        "restoring did not restore: {}",
        text(&restored.stderr)
    );

    // An expired statement (freeze attack).
    p.ok(&[
        "promote",
        &release,
        "--channel",
        "prod",
        "--key",
        "ops",
        "--expires",
        "1s",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    refused(&p.verify_channel(&good, &[]), 1, "statement expired at");

    // Loose permissions on a private key: refused, and nothing is signed.
    let seq_before = p.channel_json()["sequence"].as_u64();
    set_mode(&p.keys.join("ops.key"), 0o644);
    p.refused(
        &["promote", &release, "--channel", "prod", "--key", "ops"],
        "must not be accessible by group or others",
    );
    assert_eq!(p.channel_json()["sequence"].as_u64(), seq_before);
    set_mode(&p.keys.join("ops.key"), 0o600);

    // Bad input: not a release, bad channel names.
    let blob = p.ok(&[
        "store",
        "add",
        p.project.join("src/greeting.txt").to_str().unwrap(),
    ]);
    p.refused(
        &["promote", &blob, "--channel", "prod", "--key", "ops"],
        "is not a release",
    );
    for bad in ["a/b", "has space"] {
        p.refused(
            &["promote", &release, "--channel", bad, "--key", "ops"],
            "channel",
        );
    }
    assert_eq!(p.channel_json()["sequence"].as_u64(), seq_before);
    assert!(before["sequence"].as_u64() < seq_before);
}

#[test]
fn accepted_sequences_are_remembered_without_a_flag() {
    let p = Pipeline::new();
    let release = p.release("1.0");
    let policy = p.policy(&["ci", "ops"], 1);
    p.ok(&["promote", &release, "--channel", "prod", "--key", "ops"]);
    let name = format!("channels/{SERVICE}/prod");
    let first: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "ref", "get", &name])).unwrap();
    p.ok(&["promote", &release, "--channel", "prod", "--key", "ops"]);
    let accepted: serde_json::Value = serde_json::from_str(&p.ok(&[
        "--json", "channel", "verify", SERVICE, "prod", "--policy", &policy,
    ]))
    .unwrap();
    assert_eq!(
        (accepted["sequence"].as_u64(), accepted["new"].as_bool()),
        (Some(2), Some(true))
    );
    // The same statement again is accepted, and is not news.
    let again: serde_json::Value = serde_json::from_str(&p.ok(&[
        "--json", "channel", "verify", SERVICE, "prod", "--policy", &policy,
    ]))
    .unwrap();
    assert_eq!(again["new"].as_bool(), Some(false));
    let mark = p
        .machine
        .state()
        .unwrap()
        .join("cairn/accepted")
        .join(SERVICE)
        .join("prod.json");
    let mark: serde_json::Value = serde_json::from_slice(&std::fs::read(mark).unwrap()).unwrap();
    assert_eq!(mark["sequence"], 2);

    // Statement #1, validly signed, replayed into the ref: refused from
    // memory alone, and the mark stays.
    p.set_ref(&name, first["value"].as_str().unwrap());
    p.verify_refused(
        &policy,
        &[],
        "sequence 1 is not greater than the last accepted sequence 2",
    );
    // A fresh state directory has no memory: it accepts #1 (first contact).
    let elsewhere = Machine {
        cache: Some(p.root.join("other-cache")),
        ..p.machine.clone()
    };
    let out = elsewhere.run(&["channel", "verify", SERVICE, "prod", "--policy", &policy]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_two_key_channel_needs_two_distinct_signers() {
    let p = Pipeline::new();
    let release = p.release("1.0");
    let two = p.policy(&["ci", "ops", "ops2"], 2);
    p.ok(&["promote", &release, "--channel", "prod", "--key", "ops"]);
    refused(
        &p.verify_channel(&two, &[]),
        1,
        "only 1 distinct trusted key(s) signed, the channel requires 2",
    );
    p.ok(&["channel", "sign", SERVICE, "prod", "--key", "ops"]); // the same key again
    refused(
        &p.verify_channel(&two, &[]),
        1,
        "only 1 distinct trusted key(s) signed",
    );
    p.ok(&["channel", "sign", SERVICE, "prod", "--key", "ops2"]);
    let ok = p.verify_channel(&two, &[]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));

    // The statement is fine, but the release was signed by a key this
    // policy does not trust.
    refused(
        &p.verify_channel(&p.policy(&["ops", "ops2"], 2), &[]),
        1,
        "release is not signed by any trusted key",
    );

    // The artifact missing from the store: refused, naming it.
    let show: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "release", "show", &release])).unwrap();
    let artifact = show["document"]["artifact"]["hash"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob = p.store.join("blobs").join(&artifact[..2]).join(&artifact);
    std::fs::remove_file(blob).unwrap();
    refused(&p.verify_channel(&two, &[]), 1, &artifact);
}
