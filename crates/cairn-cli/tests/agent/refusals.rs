//! Statements the agent must refuse (nothing of them fetched or run), and
//! configurations and stores it must refuse at start.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::fixture::{cairn, fixture, CAIRN, SERVICE};
use crate::harness::{free_port, Options, Server, TestAgent};

const T: Duration = Duration::from_secs(30);

/// A DSSE envelope (JSON text) with `from` replaced by `to` in its payload.
fn tamper(envelope: &str, from: &str, to: &str) -> String {
    use base64::Engine as _;
    let mut v: serde_json::Value = serde_json::from_str(envelope).unwrap();
    let engine = base64::engine::general_purpose::STANDARD;
    let payload = engine.decode(v["payload"].as_str().unwrap()).unwrap();
    let text = String::from_utf8(payload).unwrap();
    assert!(text.contains(from), "{text}");
    v["payload"] = engine.encode(text.replace(from, to)).into();
    v.to_string()
}

#[test]
fn refused_statements_fetch_and_run_nothing() {
    let fx = fixture();
    let mut a = TestAgent::new("refuse", Options::default());
    a.start();
    fx.promote(&fx.v1, "refuse", "ci", None);
    a.wait_serving("1", T);
    let channel = format!("channels/{SERVICE}/refuse");
    let (first, _) = fx.get_ref(&channel);
    let v2_artifact = fx.artifact(&fx.v2);

    let mut refusals = 0;
    let mut refused = |what: &str, expect: &str| {
        refusals += 1;
        let s = a.wait_for(what, T, |s| {
            s["counters"]["refusals"].as_u64() >= Some(refusals)
                && s["refused"].as_str().is_some_and(|r| r.contains(expect))
        });
        assert_eq!(s["member"]["version"], "1", "{what}: still v1");
        assert_eq!(a.version().as_deref(), Some("1"), "{what}");
        assert!(!a.has_blob(&fx.v2), "{what}: the release was not fetched");
        assert!(!a.has_blob(&v2_artifact), "{what}: nor its artifact");
        assert_eq!(a.generations().len(), 1, "{what}: {:?}", a.generations());
        assert_eq!(a.service_pids().len(), 1, "{what}");
        let error = s["member"]["last_error"].as_str().unwrap().to_string();
        assert!(
            error.starts_with("refused channel http-hello/refuse: "),
            "{error}"
        );
    };

    // Signed by a key the agent does not trust.
    fx.promote(&fx.v2, "refuse", "rogue", None);
    refused(
        "an untrusted signer",
        "which the trust policy does not list",
    );

    // A trusted statement (#3, v1 again: nothing to do), then tampered.
    fx.promote(&fx.v1, "refuse", "ci", None);
    a.wait_for("#3 accepted", T, |s| s["refused"].is_null());
    let (third, _) = fx.get_ref(&channel);
    fx.set_ref(
        &channel,
        &tamper(&third, "\"sequence\":3", "\"sequence\":9"),
    );
    refused(
        "a tampered statement",
        "the payload or signature was altered",
    );

    // The same statement with its signatures taken away: unsigned.
    let mut unsigned: serde_json::Value = serde_json::from_str(&third).unwrap();
    unsigned["signatures"] = serde_json::json!([]);
    fx.set_ref(&channel, &unsigned.to_string());
    refused(
        "an unsigned statement",
        "only 0 distinct trusted key(s) signed, the channel requires 1",
    );

    // Statement #1 again: validly signed, but older than what was accepted.
    fx.set_ref(&channel, &first);
    refused(
        "a replayed statement",
        "sequence 1 is not greater than the last accepted sequence 3",
    );

    // Expired as it is made (#4: #3 is put back first, so the sequence
    // would be fine).
    fx.set_ref(&channel, &third);
    fx.promote(&fx.v2, "refuse", "ci", Some("0s"));
    refused("an expired statement", "statement expired at");
    let (fourth, _) = fx.get_ref(&channel);

    // A valid statement, for another service, placed in this channel.
    fx.promote(&fx.other, "refuse", "ci", None);
    let (theirs, _) = fx.get_ref("channels/other-hello/refuse");
    fx.set_ref(&channel, &theirs);
    refused(
        "another service's statement",
        "statement is for service \"other-hello\"",
    );

    // And a good one (#5, after #4 is put back) still goes through.
    fx.set_ref(&channel, &fourth);
    fx.promote(&fx.v2, "refuse", "ci", None);
    a.wait_serving("2", T);
    assert_eq!(a.version().as_deref(), Some("2"));
}

/// `cairn agent` with the test's agent.toml as edited by `edit`; it must
/// fail at start with exit status 1; returns its stderr.
pub(crate) fn refused_at_start(
    name: &str,
    options: Options,
    edit: impl Fn(&str) -> String,
    args: &[&str],
) -> String {
    let a = TestAgent::new(name, options);
    let text = std::fs::read_to_string(&a.config).unwrap();
    std::fs::write(&a.config, edit(&text)).unwrap();
    let mut child = Command::new(CAIRN)
        .args(args)
        .args(["agent", "--config"])
        .arg(&a.config)
        .env_remove("CAIRN_TOKEN")
        .env("CAIRN_KEYS", a.dir.join("no-keys"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // An agent that was not refused runs on: it is killed, and fails the test.
    let exited = crate::harness::eventually(T, || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(exited, "{name}: the agent started instead of being refused");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{name}: {err}");
    assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
    assert!(a.service_pids().is_empty());
    err
}

#[test]
fn bad_configurations_and_stores_fail_at_start() {
    let fx = fixture();
    let config = format!("{}", fx.root.join("tests/start-typo/agent.toml").display());
    let err = refused_at_start(
        "start-typo",
        Options::default(),
        |t| t.replace("poll_interval", "pol_interval"),
        &[],
    );
    assert!(
        err.starts_with(&format!(
            "error: {config}:7:1: unknown field `pol_interval`"
        )),
        "{err}"
    );

    // The set's rollout plan: unknown keys refused, naming the table.
    let config = format!(
        "{}",
        fx.root.join("tests/start-deploy/agent.toml").display()
    );
    let err = refused_at_start(
        "start-deploy",
        Options {
            extra: "\n[deploy]\nstrategy = \"rolling\"\nmax_unavalable = 2\n".into(),
            ..Options::default()
        },
        |t| t.into(),
        &[],
    );
    assert!(
        err.contains(&format!(
            "{config}:17:1: `deploy`: unknown field `max_unavalable`"
        )),
        "{err}"
    );

    let err = refused_at_start(
        "start-nostore",
        Options {
            store: Some("/nonexistent/store".into()),
            ..Options::default()
        },
        |t| t.into(),
        &[],
    );
    assert!(
        err.contains(
            "opening store /nonexistent/store (agent.toml `store`): no store at /nonexistent/store"
        ),
        "{err}"
    );

    let key_id = cairn(&fx.store, &fx.keys, &fx.root, &["--json", "key", "list"]);
    let keys: serde_json::Value = serde_json::from_str(&key_id).unwrap();
    let ci = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ci")
        .unwrap()["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    let err = refused_at_start(
        "start-nokey",
        Options::default(),
        |t| t.replace(&fx.ci_public, &ci),
        &[],
    );
    assert!(
        err.contains(&format!("trust key {ci} has no public key")),
        "{err}"
    );

    let token_file = fx.root.join("caller-token");
    std::fs::write(&token_file, "t").unwrap();
    let err = refused_at_start(
        "start-caller-token",
        Options::default(),
        |t| t.into(),
        &["--token-file", token_file.to_str().unwrap()],
    );
    assert!(
        err.contains("not from --token-file or CAIRN_TOKEN"),
        "{err}"
    );

    let addr = free_port();
    let _server = Server::start(&fx.store, addr);
    let options = Options {
        store: Some(format!("http://{addr}")),
        token: Some("cairn_not-a-real-token".into()),
        ..Options::default()
    };
    let err = refused_at_start("start-badtoken", options, |t| t.into(), &[]);
    assert!(
        err.contains(&format!("opening store http://{addr} (agent.toml `store`)"))
            && err.contains("401"),
        "{err}"
    );

    // The service's user could not reach its generations: a state
    // directory below a directory only root may search.
    let closed = tempfile::tempdir().unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let options = Options {
        top: "user = \"nobody\"\n".into(),
        state_dir: Some(closed.path().join("state")),
        ..Options::default()
    };
    let err = refused_at_start("start-unreachable", options, |t| t.into(), &[]);
    assert!(
        err.contains("the service's user (uid 65534, gid 65534) cannot reach")
            && err.contains(&format!(
                "{} is mode 0700, owned by uid 0",
                closed.path().canonicalize().unwrap().display()
            )),
        "{err}"
    );
}
