//! Releases, channels and independent verification end to end: the real
//! binary builds `examples/busybox-hello` in a real sandbox, signs, promotes,
//! rolls back, and refuses every attack with its precise reason while
//! nothing changes.
//!
//! By theme: [`lifecycle`] (release, promote, roll back, reproduce, and
//! channels read as history), [`trust`] (attacks refused with their
//! reason, accepted sequences, two-key channels), [`terminal`] (a
//! release's words shown escaped).

#[path = "../support/mod.rs"]
mod support;

mod lifecycle;
mod terminal;
mod trust;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Output;

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
