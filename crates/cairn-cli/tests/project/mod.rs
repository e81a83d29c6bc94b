//! A project for `cairn build` tests: a busybox root file system made from
//! Debian's `busybox-static` (`/bin/busybox`; the tests fail if it is
//! missing, `.ci/run` installs it), a source directory and a recipe.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const BUSYBOX: &str = "/bin/busybox";

pub struct Project {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub dir: PathBuf,
    pub store: PathBuf,
}

impl Project {
    /// A project with a busybox rootfs and `src/`, built by `run` (a shell
    /// script) in one step `build`; `extra` is appended to the step table.
    pub fn new(script: &str, extra: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let dir = root.join("proj");
        make_rootfs(&dir.join("rootfs"));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/input.txt"), "an input\n").unwrap();
        let p = Self {
            store: root.join("store"),
            root,
            dir,
            _tmp: tmp,
        };
        p.recipe(&format!(
            r#"[service]
name = "t"
[inputs.rootfs]
path = "rootfs"
[inputs.src]
path = "src"
[steps.build]
mounts = {{ "/" = "rootfs", "/src" = "src" }}
workdir = "/src"
env = {{ PATH = "/bin" }}
run = ["/bin/sh", "-c", '''{script}''']
{extra}
"#
        ));
        p
    }

    pub fn recipe(&self, text: &str) {
        std::fs::write(self.dir.join("cairn.toml"), text).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(CAIRN);
        c.arg("--store")
            .arg(&self.store)
            .args(args)
            .env_remove("CAIRN_STORE");
        c
    }

    pub fn build(&self, args: &[&str]) -> Output {
        let mut all = vec!["build", "-C", self.dir.to_str().unwrap()];
        all.extend_from_slice(args);
        self.command(&all).output().unwrap()
    }

    /// Builds with `--json` and expects success; returns the last step's JSON.
    pub fn build_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.build(&all);
        assert!(out.status.success(), "build failed: {}", stderr(&out));
        let steps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        steps.as_array().unwrap().last().unwrap().clone()
    }

    /// Builds expecting exit 1; returns stderr.
    pub fn build_fails(&self, args: &[&str]) -> String {
        let out = self.build(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "expected failure: {}",
            stderr(&out)
        );
        stderr(&out)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(out.status.success(), "cairn {args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The entries of a tree (`store ls -r --json`).
    pub fn ls(&self, tree: &str) -> Vec<serde_json::Value> {
        let text = self.ok(&["--json", "store", "ls", "-r", tree]);
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// The content of the file `path` in tree `tree`.
    pub fn cat(&self, tree: &str, path: &str) -> String {
        let entries = self.ls(tree);
        let e = entries.iter().find(|e| e["path"] == path);
        let digest = e.unwrap_or_else(|| panic!("{path} not in {entries:?}"))["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        self.ok(&["store", "cat", &digest])
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `dir/bin/busybox` plus one symlink per applet.
pub fn make_rootfs(dir: &Path) {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: apt-get install busybox-static"
    );
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
}
