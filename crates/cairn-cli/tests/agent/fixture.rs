//! What every agent test shares, made once per test binary: the
//! `examples/http-hello` service built by the real `cairn` in the real
//! sandbox (with the C toolchain of `examples/c-hello`), released as v1, v2
//! and a broken v3 (its `/healthz` answers 503), plus two releases of
//! another service (`other-hello` 1 and 2), all signed with key `ci` in one
//! store. Tests promote them on
//! channels of their own, so they never see each other's statements.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
pub const SERVICE: &str = "http-hello";

/// The shared store, keys and releases.
pub struct Fixture {
    /// Scratch space for tests (under the target directory).
    pub root: PathBuf,
    /// The store the releases are in.
    pub store: PathBuf,
    /// The keys directory (`ci` trusted, `rogue` not).
    pub keys: PathBuf,
    /// `ci`'s public key line, for agent.toml.
    pub ci_public: String,
    /// The releases.
    pub v1: String,
    pub v2: String,
    /// Fails its health check.
    pub v3: String,
    /// Releases of service `other-hello`, versions 1 and 2.
    pub other: String,
    pub other2: String,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// The fixture, built on first use.
pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(build)
}

/// Runs `cairn ARGS` against the fixture's store and keys; panics on failure.
pub fn cairn(store: &Path, keys: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(CAIRN)
        .arg("--store")
        .arg(store)
        .arg("--keys")
        .arg(keys)
        .args(args)
        .current_dir(dir)
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_TOKEN")
        .output()
        .expect("running cairn");
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn build() -> Fixture {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    remove_stale(base);
    let root = base.join(format!("agent-fixture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let src = root.join("src");
    copy_dir(&Path::new(EXAMPLES).join("c-hello"), &src.join("c-hello"));
    copy_dir(
        &Path::new(EXAMPLES).join("http-hello"),
        &src.join("http-hello"),
    );
    let project = src.join("http-hello");
    let store = root.join("store");
    let keys = root.join("keys");
    let made = Command::new("sh")
        .arg(project.join("make-toolchain.sh"))
        .env("CAIRN", CAIRN)
        .env("CAIRN_STORE", &store)
        .output()
        .expect("running make-toolchain.sh");
    assert!(
        made.status.success(),
        "make-toolchain.sh (needs gcc and libc6-dev): {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let run = |args: &[&str]| cairn(&store, &keys, &project, args);
    run(&["key", "generate", "ci"]);
    run(&["key", "generate", "rogue"]);
    let ci_public = run(&["key", "export", "ci"]);
    let release = |version: &str, broken: bool| {
        let mut header = format!("#define VERSION \"{version}\"\n");
        if broken {
            header.push_str("#define BROKEN 1\n");
        }
        std::fs::write(project.join("src/version.h"), header).unwrap();
        run(&["release", "--key", "ci", "--version", version])
    };
    let (v1, v2, v3) = (release("1", false), release("2", false), release("3", true));
    let recipe = std::fs::read_to_string(project.join("cairn.toml")).unwrap();
    std::fs::write(
        project.join("cairn.toml"),
        recipe.replace("name = \"http-hello\"", "name = \"other-hello\""),
    )
    .unwrap();
    let (other, other2) = (release("1", false), release("2", false));
    std::fs::write(project.join("cairn.toml"), recipe).unwrap();
    Fixture {
        root,
        store,
        keys,
        ci_public,
        v1,
        v2,
        v3,
        other,
        other2,
    }
}

impl Fixture {
    /// A server token named `name` an agent of this service uses: it reads
    /// the store and writes the service's fleet records.
    pub fn agent_token(&self, name: &str) -> String {
        let fleet = format!("fleet:{SERVICE}");
        let args = [
            "server", "token", "create", name, "--scope", "read", "--scope", &fleet,
        ];
        cairn(&self.store, &self.keys, &self.root, &args)
    }

    /// `cairn promote RELEASE --channel CHANNEL --key KEY [--expires E]`.
    pub fn promote(&self, release: &str, channel: &str, key: &str, expires: Option<&str>) {
        let mut args = vec!["promote", release, "--channel", channel, "--key", key];
        if let Some(e) = expires {
            args.extend(["--expires", e]);
        }
        cairn(&self.store, &self.keys, &self.root, &args);
    }

    /// The value of ref `name` (JSON text of its envelope) and its version.
    pub fn get_ref(&self, name: &str) -> (String, String) {
        let out = cairn(
            &self.store,
            &self.keys,
            &self.root,
            &["--json", "ref", "get", name],
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (
            v["value"].as_str().unwrap().to_string(),
            v["version"].as_str().unwrap().to_string(),
        )
    }

    /// Replaces ref `name`'s value.
    pub fn set_ref(&self, name: &str, value: &str) {
        let (_, version) = self.get_ref(name);
        cairn(
            &self.store,
            &self.keys,
            &self.root,
            &["ref", "set", name, value, "--expect", &version],
        );
    }

    /// A release's artifact digest (`sha256:…`).
    pub fn artifact(&self, release: &str) -> String {
        let out = cairn(
            &self.store,
            &self.keys,
            &self.root,
            &["--json", "release", "show", release],
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["document"]["artifact"]["hash"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// Removes fixtures of earlier runs whose process is gone.
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("agent-fixture-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = Command::new("chmod")
                .args(["-R", "u+w"])
                .arg(e.path())
                .status();
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Copies an example directory, leaving out what its scripts make.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if name == "toolchain" || name == "rootfs" {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if e.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}
