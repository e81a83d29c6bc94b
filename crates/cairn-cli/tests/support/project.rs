//! A project of a test's own: an example of `examples/` (or nothing)
//! copied into a temporary directory with its files created in a chosen
//! order, a store, keys and state beside it, and `cairn` and the
//! example's setup scripts run there through a [`Machine`].

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::cli::Machine;
use super::surroundings::Order;

/// The repository's examples.
pub const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");

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
