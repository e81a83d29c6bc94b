//! A project of a test's own: an example of `examples/`, a one-step
//! busybox project ([`Project::busybox`]) or nothing, in a temporary
//! directory (an example's files created in a chosen order), a store,
//! keys and state beside it, and `cairn` and the example's setup scripts
//! run there through a [`Machine`].
//!
//! A busybox project's root file system is made from Debian's
//! `busybox-static` (`/bin/busybox`; a test fails if it is missing,
//! `.ci/run` installs it).

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use super::cli::{text, Machine};
use super::surroundings::Order;

/// The repository's examples.
pub const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");

/// The busybox a busybox project's root file system is made of.
const BUSYBOX: &str = "/bin/busybox";

/// The directories the examples' setup scripts make (never copied: made
/// fresh in each copy).
const MADE: [&str; 2] = ["rootfs", "toolchain"];

/// Every example: each directory of `examples/` with a `cairn.toml`,
/// sorted.
pub fn examples() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(EXAMPLES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("cairn.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every regular file under `dir/rel` (relative to `dir`), without the
/// directories the setup scripts make.
fn files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let path = rel.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            if !MADE.iter().any(|m| path == Path::new(m)) {
                files(dir, &path, out);
            }
        } else {
            assert!(kind.is_file(), "{}: not a regular file", path.display());
            out.push(path);
        }
    }
}

/// Copies `examples/NAME` to `to`, creating its files (and so their
/// directories) in `order`, each given the time `time` if one is given.
pub fn copy_example(name: &str, to: &Path, order: Order, time: Option<SystemTime>) {
    let from = Path::new(EXAMPLES).join(name);
    let mut all = Vec::new();
    files(&from, Path::new(""), &mut all);
    all.sort();
    if order == Order::Reversed {
        all.reverse();
    }
    std::fs::create_dir_all(to).unwrap();
    for rel in all {
        let dest = to.join(&rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&rel), &dest).unwrap();
        if let Some(time) = time {
            let file = std::fs::File::options().write(true).open(&dest).unwrap();
            file.set_times(
                std::fs::FileTimes::new()
                    .set_accessed(time)
                    .set_modified(time),
            )
            .unwrap();
        }
    }
}

/// A project in a temporary directory `root`: its working directory
/// `root/NAME`, store `root/store`, keys `root/keys`, cache and state
/// beside them. Derefs to its [`Machine`].
pub struct Project {
    /// The temporary directory (removed when the project drops).
    pub root: PathBuf,
    /// The project's directory.
    pub dir: PathBuf,
    /// How `cairn` runs there.
    pub machine: Machine,
    _tmp: tempfile::TempDir,
}

impl Project {
    /// An empty project `NAME` in a new temporary directory.
    pub fn empty(name: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            machine: Machine::under(&root, &dir),
            root,
            dir,
            _tmp: tmp,
        }
    }

    /// `examples/NAME` copied in, its files in sorted order (its setup
    /// scripts not yet run: see [`Project::setup`]).
    pub fn example(name: &str) -> Self {
        let p = Self::empty(name);
        copy_example(name, &p.dir, Order::Sorted, None);
        p
    }

    /// A project `proj` built by one step, `build`: a busybox root file
    /// system (`rootfs/`, see [`make_rootfs`]) and `src/input.txt`
    /// mounted at `/src`, its working directory, where the step runs
    /// `script` (a shell script); `extra` is appended to the step's table.
    pub fn busybox(script: &str, extra: &str) -> Self {
        let p = Self::empty("proj");
        make_rootfs(&p.dir.join("rootfs"));
        std::fs::create_dir_all(p.dir.join("src")).unwrap();
        p.write("src/input.txt", "an input\n");
        p.write(
            "cairn.toml",
            &format!(
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
            ),
        );
        p
    }

    /// The project's local store (`--store`).
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    /// `cairn build -C DIR ARGS…`.
    pub fn build(&self, args: &[&str]) -> Output {
        let dir = self.dir.to_str().unwrap();
        let all: Vec<&str> = ["build", "-C", dir].iter().chain(args).copied().collect();
        self.run(&all)
    }

    /// `cairn --json build -C DIR ARGS…`, which must succeed; returns the
    /// last step's JSON.
    pub fn build_json(&self, args: &[&str]) -> serde_json::Value {
        let all: Vec<&str> = std::iter::once("--json")
            .chain(args.iter().copied())
            .collect();
        let out = self.build(&all);
        assert!(out.status.success(), "build failed: {}", text(&out.stderr));
        let steps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        steps.as_array().unwrap().last().unwrap().clone()
    }

    /// `cairn build -C DIR ARGS…`, which must exit 1; returns its stderr.
    pub fn build_fails(&self, args: &[&str]) -> String {
        let out = self.build(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "expected failure: {err}");
        err
    }

    /// Runs the project's setup script `script`; returns its stdout.
    pub fn setup(&self, script: &str) -> String {
        self.machine.script(&self.dir.join(script))
    }

    /// Copies `examples/NAME` beside the project (for a script of the
    /// project that runs a sibling's).
    pub fn copy_sibling(&self, name: &str) {
        copy_example(
            name,
            &self.dir.parent().unwrap().join(name),
            Order::Sorted,
            None,
        );
    }

    /// The project's `cairn.toml`.
    pub fn recipe(&self) -> String {
        std::fs::read_to_string(self.dir.join("cairn.toml")).unwrap()
    }

    /// Writes `content` to the project's `file`.
    pub fn write(&self, file: &str, content: &str) {
        std::fs::write(self.dir.join(file), content).unwrap();
    }
}

impl Deref for Project {
    type Target = Machine;

    fn deref(&self) -> &Machine {
        &self.machine
    }
}

/// `dir/bin/busybox` plus one symlink per applet: a root file system.
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
