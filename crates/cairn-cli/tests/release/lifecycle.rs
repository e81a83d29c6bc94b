//! A release's life: signed, promoted, rolled back and reproduced;
//! channels read like history; a release holds its inputs whole.

use crate::support::cli::text;
use crate::{Pipeline, SERVICE};

#[test]
fn release_promote_rollback_and_reproduce() {
    let p = Pipeline::new();
    let v1 = p.release("1.0");
    assert!(v1.starts_with("sha256:"), "{v1}");
    let show: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "release", "show", &v1])).unwrap();
    assert_eq!(show["document"]["version"], "1.0");
    assert_eq!(show["document"]["run"]["command"][0], "bin/hello");

    std::fs::write(p.project.join("src/greeting.txt"), "a second greeting\n").unwrap();
    let v2 = p.release("2.0");
    assert_ne!(v1, v2);

    p.ok(&["promote", &v1, "--channel", "prod", "--key", "ops"]);
    p.ok(&["promote", &v2, "--channel", "prod", "--key", "ops"]);
    let policy = p.policy(&["ci", "ops"], 1);
    let accepted = p.verify_channel(&policy, &[]);
    assert!(accepted.status.success(), "{}", text(&accepted.stderr));
    assert!(String::from_utf8_lossy(&accepted.stdout).contains("2.0"));

    p.ok(&["rollback", SERVICE, "--channel", "prod", "--key", "ops"]);
    let now = p.channel_json();
    assert_eq!(
        (now["sequence"].as_u64(), now["release"].as_str()),
        (Some(3), Some(v1.as_str()))
    );
    let history = p.ok(&["channel", "history", SERVICE, "prod"]);
    assert_eq!(
        history.lines().count(),
        4,
        "a header and 3 statements: {history}"
    );

    // Each release is rebuilt from the recipe and inputs it recorded, not
    // from the working tree (which now holds v2's source): both reproduce.
    for release in [&v2, &v1] {
        let reproduced = p.ok(&["verify", release]);
        assert!(reproduced.starts_with("reproduced:"), "{reproduced}");
    }
}

#[test]
fn channels_read_like_history_and_rollbacks_walk_back() {
    let p = Pipeline::new();
    let mut releases = Vec::new();
    for v in ["1.0", "2.0", "3.0"] {
        std::fs::write(
            p.project.join("src/greeting.txt"),
            format!("greeting {v}\n"),
        )
        .unwrap();
        let r = p.release(v);
        p.ok(&["promote", &r, "--channel", "prod", "--key", "ops"]);
        releases.push(r);
    }
    let at = |p: &Pipeline| p.channel_json()["release"].as_str().unwrap().to_string();
    let rollback = |p: &Pipeline, extra: &[&str]| {
        let mut args = vec!["rollback", SERVICE, "--channel", "prod", "--key", "ops2"];
        args.extend_from_slice(extra);
        p.run(&args)
    };
    assert!(rollback(&p, &[]).status.success());
    assert_eq!(at(&p), releases[1]);
    assert!(rollback(&p, &[]).status.success());
    assert_eq!(at(&p), releases[0], "a second rollback goes further back");
    let out = rollback(&p, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no earlier release"),
        "{}",
        text(&out.stderr)
    );
    // --to: a version label of the history, or a digest.
    assert!(rollback(&p, &["--to", "3.0"]).status.success());
    assert_eq!(at(&p), releases[2]);
    assert!(rollback(&p, &["--to", &releases[1]]).status.success());
    assert_eq!(at(&p), releases[1]);
    let out = rollback(&p, &["--to", "9.9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("it has: 2.0, 3.0, 1.0"),
        "{}",
        text(&out.stderr)
    );

    // The history: newest first, with version, date and signer names.
    let history: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "channel", "history", SERVICE, "prod"])).unwrap();
    let rows = history.as_array().unwrap();
    let versions: Vec<&str> = rows
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2.0", "3.0", "1.0", "2.0", "3.0", "2.0", "1.0"]);
    assert_eq!(rows[0]["sequence"], 7);
    assert_eq!(rows[0]["version"], "2.0");
    assert_eq!(rows[6]["version"], "1.0");
    assert_eq!(rows[6]["signed_by"][0]["name"], "ops");
    assert_eq!(rows[0]["signed_by"][0]["name"], "ops2");
    assert!(rows
        .iter()
        .all(|r| r["issued"].as_str().is_some_and(|t| t.contains('T'))));
    let table = p.ok(&["channel", "history", SERVICE, "prod"]);
    let first = table.lines().nth(1).unwrap();
    assert!(
        first.starts_with("#7") && first.contains("2.0") && first.contains("ops2"),
        "{table}"
    );
    insta::with_settings!({filters => vec![
        (r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[DATE]"),
    ]}, {
        insta::assert_snapshot!("channel-history", table);
    });

    // A policy from an exported public key (no key ids copied by hand).
    let exported = p.ok(&["key", "export", "ops2"]);
    let policy = p.root.join("exported.toml");
    let policy = policy.to_str().unwrap();
    p.ok(&["policy", "add", policy, SERVICE, "prod", "--key", &exported]);
    let out = p.verify_channel(policy, &[]);
    // The release is signed by ci, whom this policy does not trust.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    p.ok(&["policy", "add", policy, SERVICE, "prod", "--key", "ci"]);
    let shown = p.ok(&["policy", "show", policy]);
    assert!(
        shown.contains("1 of 2 key(s)") && shown.contains("ops2") && shown.contains(" ci"),
        "{shown}"
    );
    let accepted = p.verify_channel(policy, &[]);
    assert!(accepted.status.success(), "{}", text(&accepted.stderr));
    let out = p.run(&[
        "policy",
        "add",
        policy,
        SERVICE,
        "prod",
        "--key",
        "ci",
        "--threshold",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("threshold 3"),
        "{}",
        text(&out.stderr)
    );
}

/// A release records its input trees, so it checks them whole in the store
/// even when its step is cached (a fully cached `cairn build` looks at the
/// source files only): a blob the store lost is stored again.
#[test]
fn a_release_holds_its_inputs_whole_even_when_its_step_is_cached() {
    let p = Pipeline::new();
    // The stat cache vouches only for files not changed within a second
    // of the snapshot that saw them.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    p.release("1.0");
    let busybox = std::fs::read(p.project.join("rootfs/bin/busybox")).unwrap();
    let hex = cairn_digest::Digest::of(&busybox).hex();
    let blob = p.store.join("blobs").join(&hex[..2]).join(&hex);
    std::fs::remove_file(&blob).unwrap();

    let built: serde_json::Value = serde_json::from_str(&p.ok(&["--json", "build"])).unwrap();
    assert_eq!(built[0]["cached"], true, "{built}");
    assert!(
        !blob.exists(),
        "the cached build looked at the input's blob"
    );

    p.release("1.1");
    assert_eq!(std::fs::read(&blob).unwrap(), busybox);
    let verified: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "store", "verify"])).unwrap();
    assert_eq!(verified["dangling"], serde_json::json!([]), "{verified}");
    assert_eq!(verified["corrupt"], serde_json::json!([]), "{verified}");
}
