//! `cairn` run as a user runs it, from the tests: the real binary, with a
//! store, keys, a cache, a state directory and a working directory of the
//! test's own, and nothing of the caller's environment (no `CAIRN_STORE`
//! or `CAIRN_TOKEN` leaks in from the shell that runs the tests), and
//! optionally in varied [`Surroundings`].

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::project::copy_example;
use super::surroundings::{Order, Surroundings};

/// The binary under test.
pub const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
/// The busybox-hello example, the project most tests build and release.
pub const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/busybox-hello");

/// One user's machine: what its `cairn` commands are given. Every field
/// left `None` is left to cairn's defaults (and the test's environment,
/// minus cairn's own variables).
#[derive(Clone, Debug, Default)]
pub struct Machine {
    /// `--store`: a directory, `s3://…` or `http(s)://…`.
    pub store: Option<String>,
    /// `CAIRN_TOKEN`.
    pub token: Option<String>,
    /// `CAIRN_CACHE`; its sibling `<cache>.state` is the user's state
    /// directory (the channels it accepted), never the real user's.
    pub cache: Option<PathBuf>,
    /// `--keys`.
    pub keys: Option<PathBuf>,
    /// The working directory (created if missing).
    pub dir: Option<PathBuf>,
    /// Run in these surroundings, with `home` as the home directory;
    /// `None`: in the test's own environment.
    pub surroundings: Option<Surroundings>,
    /// `HOME` in [`Machine::surroundings`] (created if missing).
    pub home: Option<PathBuf>,
}

impl Machine {
    /// A machine on `store`, with `token` and a cache of its own.
    pub fn new(store: &str, token: Option<&str>, cache: &Path) -> Self {
        Self {
            store: Some(store.to_string()),
            token: token.map(str::to_string),
            cache: Some(cache.to_path_buf()),
            ..Self::default()
        }
    }

    /// Everything under `root`: the store `root/store`, keys `root/keys`,
    /// cache `root/cache`, working in `dir`.
    pub fn under(root: &Path, dir: &Path) -> Self {
        Self {
            keys: Some(root.join("keys")),
            dir: Some(dir.to_path_buf()),
            ..Self::new(
                root.join("store").to_str().unwrap(),
                None,
                &root.join("cache"),
            )
        }
    }

    /// The same machine on another store, with another token.
    pub fn with(&self, store: &str, token: Option<&str>) -> Self {
        Self {
            store: Some(store.into()),
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    /// The user's state directory (`XDG_STATE_HOME`), beside the cache.
    pub fn state(&self) -> Option<PathBuf> {
        self.cache.as_ref().map(|c| c.with_extension("state"))
    }

    /// `program`, not yet run: directly, or in the machine's surroundings.
    fn program(&self, program: &str) -> Command {
        match &self.surroundings {
            Some(s) => s.command(program, self.home.as_deref().expect("a home")),
            None => Command::new(program),
        }
    }

    /// `cairn ARGS…`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.program(CAIRN);
        cmd.env_remove("CAIRN_STORE")
            .env_remove("CAIRN_TOKEN")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test");
        if let Some(s) = &self.store {
            cmd.arg("--store").arg(s);
        }
        if let Some(t) = &self.token {
            cmd.env("CAIRN_TOKEN", t);
        }
        if let Some(k) = &self.keys {
            cmd.arg("--keys").arg(k);
        }
        if let (Some(c), Some(state)) = (&self.cache, self.state()) {
            cmd.env("CAIRN_CACHE", c).env("XDG_STATE_HOME", state);
        }
        if let Some(d) = &self.dir {
            std::fs::create_dir_all(d).unwrap();
            cmd.current_dir(d);
        }
        cmd.args(args);
        cmd
    }

    /// Runs `cairn ARGS…`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .expect("sh and unshare (util-linux) must be installed")
    }

    /// `sh SCRIPT` (an example's setup script), not yet run, with `cairn`
    /// and the machine's store in `CAIRN` and `CAIRN_STORE`, and none of
    /// the toolchain locations the scripts take from the caller.
    pub fn script_command(&self, script: &Path) -> Command {
        let mut cmd = self.program("sh");
        cmd.arg(script)
            .env("CAIRN", CAIRN)
            .env("CAIRN_STORE", self.store.as_deref().expect("a store"))
            .env_remove("GOROOT")
            .env_remove("ZIGLANG")
            .env_remove("QEMU");
        if let Some(d) = &self.dir {
            cmd.current_dir(d);
        }
        cmd
    }

    /// Runs `sh SCRIPT`, expects success, returns its stdout.
    pub fn script(&self, script: &Path) -> String {
        self.script_with(script, &[])
    }

    /// Runs `sh SCRIPT` with `env` besides, expects success, returns its
    /// stdout.
    pub fn script_with(&self, script: &Path, env: &[(&str, &str)]) -> String {
        let out = self
            .script_command(script)
            .envs(env.iter().copied())
            .output()
            .expect("sh and unshare (util-linux) must be installed");
        let name = script.file_name().unwrap().to_string_lossy();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `cairn --json test ARGS…`: its exit code, its steps, its stderr.
    pub fn test(&self, args: &[&str]) -> (i32, Vec<Value>, String) {
        let all: Vec<&str> = ["--json", "test"].iter().chain(args).copied().collect();
        let out = self.run(&all);
        let steps: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: stdout {:?}, stderr {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let steps = steps.as_array().expect("an array of steps").clone();
        (
            out.status.code().unwrap(),
            steps,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs, expects success, returns stdout trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cairn {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Runs with `--json`, expects success, returns what it printed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let args: Vec<&str> = std::iter::once("--json")
            .chain(args.iter().copied())
            .collect();
        let text = self.ok(&args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("cairn {args:?}: {e}: {text}"))
    }

    /// The entries of tree `tree` (`cairn --json store ls -r`).
    pub fn ls(&self, tree: &str) -> Vec<Value> {
        let listed = self.json(&["store", "ls", "-r", tree]);
        listed.as_array().expect("an array of entries").clone()
    }

    /// The content of the file `path` in tree `tree`, as it is (not
    /// trimmed).
    pub fn cat(&self, tree: &str, path: &str) -> String {
        let entries = self.ls(tree);
        let entry = entries.iter().find(|e| e["path"] == path);
        let digest = entry.unwrap_or_else(|| panic!("{path} not in {entries:?}"))["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        let out = self.run(&["store", "cat", &digest]);
        assert!(
            out.status.success(),
            "cairn store cat: {}",
            text(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs, expects exit status 1, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "cairn {args:?} should fail: {err}"
        );
        err
    }

    /// Runs, expects a refusal: exit `code`, one error line naming
    /// `needle` (see [`super::refused`]); returns that line.
    pub fn refused(&self, args: &[&str], code: i32, needle: &str) -> String {
        super::refused(&self.run(args), code, needle)
    }
}

/// The busybox-hello example copied into `root/busybox-hello`, its root
/// file system made (and added to `store`); returns the project.
pub fn example(root: &Path, store: &Path) -> PathBuf {
    let project = root.join("busybox-hello");
    copy_example("busybox-hello", &project, Order::Sorted, None);
    let machine = Machine {
        store: Some(store.to_str().unwrap().to_string()),
        ..Machine::default()
    };
    machine.script(&project.join("make-rootfs.sh"));
    project
}

/// The step named `name` of `steps` (as `cairn --json test` lists them).
pub fn step<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
}

/// Output bytes as text, for messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A token of `cairn server` over `store`, named `name`, with `scopes`.
pub fn token(store: &Path, name: &str, scopes: &[&str]) -> String {
    let local = Machine {
        store: Some(store.to_str().unwrap().to_string()),
        ..Machine::default()
    };
    let mut args = vec!["server", "token", "create", name];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    local.ok(&args)
}
