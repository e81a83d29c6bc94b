//! Releases, channels and independent verification end to end: the real
//! binary builds `examples/busybox-hello` in a real sandbox, signs, promotes,
//! rolls back, and refuses every attack with its precise reason while
//! nothing changes.

mod support;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Output;

use support::cli::{text, Machine};
use support::project::Project;
use support::refused;

const SERVICE: &str = "busybox-hello";

/// The busybox-hello example in a temp dir (a [`Project`], which it
/// derefs to), its rootfs made, keys ci/ops/ops2.
struct Pipeline {
    base: Project,
    /// The project's directory.
    project: PathBuf,
    /// The local store.
    store: PathBuf,
    /// The key directory.
    keys: PathBuf,
}

impl Deref for Pipeline {
    type Target = Project;

    fn deref(&self) -> &Project {
        &self.base
    }
}

impl Pipeline {
    /// The example project in a temp dir, its rootfs made, keys ci/ops/ops2.
    fn new() -> Self {
        let base = Project::example("busybox-hello");
        base.setup("make-rootfs.sh");
        let p = Self {
            project: base.dir.clone(),
            store: base.store_dir(),
            keys: base.root.join("keys"),
            base,
        };
        for key in ["ci", "ops", "ops2"] {
            p.ok(&["key", "generate", key]);
        }
        p
    }

    /// Runs, expects a refusal (exit 1, one line naming `needle`), returns
    /// its message.
    fn refused(&self, args: &[&str], needle: &str) -> String {
        refused(&self.run(args), 1, needle)
    }

    fn key_id(&self, name: &str) -> String {
        let list: serde_json::Value =
            serde_json::from_str(&self.ok(&["--json", "key", "list"])).unwrap();
        let entry = list
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == name)
            .unwrap();
        entry["key_id"].as_str().unwrap().to_string()
    }

    /// Writes a trust policy for prod and returns its path.
    fn policy(&self, keys: &[&str], threshold: usize) -> String {
        let ids: Vec<String> = keys
            .iter()
            .map(|k| format!("{:?}", self.key_id(k)))
            .collect();
        let path = self
            .root
            .join(format!("policy-{threshold}-{}.toml", keys.join("-")));
        let text = format!(
            "[[channel]]\nservice = {SERVICE:?}\nchannel = \"prod\"\nkeys = [{}]\nthreshold = {threshold}\n",
            ids.join(", ")
        );
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn release(&self, version: &str) -> String {
        self.ok(&["release", "--key", "ci", "--version", version])
    }

    fn channel_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["--json", "channel", "show", SERVICE, "prod"])).unwrap()
    }

    fn verify_channel(&self, policy: &str, extra: &[&str]) -> Output {
        let mut args = vec!["channel", "verify", SERVICE, "prod", "--policy", policy];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `channel verify` that must be refused: exit status 1, one error
    /// line naming the refusal and containing `needle`; returns stderr.
    fn verify_refused(&self, policy: &str, extra: &[&str], needle: &str) -> String {
        let err = refused(&self.verify_channel(policy, extra), 1, needle);
        assert!(err.contains("error: refused "), "{err}");
        err
    }

    /// Replaces the value of ref `name` with `value`.
    fn set_ref(&self, name: &str, value: &str) {
        let now: serde_json::Value =
            serde_json::from_str(&self.ok(&["--json", "ref", "get", name])).unwrap();
        self.ok(&[
            "ref",
            "set",
            name,
            value,
            "--expect",
            now["version"].as_str().unwrap(),
        ]);
    }
}

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

/// A DSSE envelope (JSON text) with `from` replaced by `to` in its payload,
/// signatures left as they were.
fn tamper_payload(envelope: &str, from: &str, to: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut env: serde_json::Value = serde_json::from_str(envelope).unwrap();
    let payload = String::from_utf8(b64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    assert!(payload.contains(from), "{from} not in {payload}");
    env["payload"] = b64.encode(payload.replace(from, to)).into();
    env.to_string()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
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
