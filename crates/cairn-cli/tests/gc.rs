//! `cairn store gc` end to end: the real binary, collecting while other
//! `cairn` processes add, pin, build and release; what it keeps (refs of
//! every kind, fetched inputs) and what it removes besides blobs
//! (leftovers of killed writers, caches).

mod support;

use std::ops::Deref;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use support::cli::{example, Machine};
use support::project::Project;

/// A store and keys in a temp directory (an empty [`Project`], which it
/// derefs to); commands run from there, or from the example project's
/// directory with [`Env::in_project`].
struct Env {
    base: Project,
    /// The local store.
    store: PathBuf,
}

impl Deref for Env {
    type Target = Project;

    fn deref(&self) -> &Project {
        &self.base
    }
}

impl Env {
    fn new() -> Self {
        let base = Project::empty("work");
        Self {
            store: base.store_dir(),
            base,
        }
    }

    fn project(&self) -> PathBuf {
        self.root.join("busybox-hello")
    }

    /// Runs in the project's directory and expects success.
    fn in_project(&self, args: &[&str]) -> String {
        let there = Machine {
            dir: Some(self.project()),
            ..self.machine.clone()
        };
        there.ok(args)
    }

    /// `dir` with `dirs` × `per_dir` small files, old enough to be cached.
    fn tree(&self, name: &str, dirs: usize, per_dir: usize) -> PathBuf {
        let dir = self.root.join(name);
        for d in 0..dirs {
            let sub = dir.join(format!("d{d:02}"));
            std::fs::create_dir_all(&sub).unwrap();
            for f in 0..per_dir {
                std::fs::write(sub.join(format!("f{f:03}")), format!("{name} {d} {f}\n")).unwrap();
            }
        }
        dir
    }

    /// The busybox-hello example, its root file system made, a `ci` key.
    fn release_project(&self) {
        example(&self.root, &self.store);
        self.ok(&["key", "generate", "ci"]);
    }

    /// Forgets every ref and lets two hours pass, as far as the store can
    /// tell: every blob and cache entry looks that old and every claim has
    /// expired. A collection with the default grace then deletes it all.
    fn forget_and_age(&self) {
        self.forget_refs("");
        self.age();
    }

    fn forget_refs(&self, under: &str) {
        let refs = self.store.join("refs").join(under);
        std::fs::remove_dir_all(&refs).unwrap();
        std::fs::create_dir(&refs).unwrap();
    }

    fn age(&self) {
        let _ = std::fs::remove_dir_all(self.store.join("claims"));
        let old = SystemTime::now() - Duration::from_secs(7200);
        let mut dirs = vec![self.store.join("blobs"), self.store.join("cache")];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = e.path();
                if e.file_type().unwrap().is_dir() && path.parent().unwrap().ends_with("cache") {
                    dirs.push(path.clone()); // cache/trees, cache/exec, ...
                } else if e.file_type().unwrap().is_dir() && dir.ends_with("blobs") {
                    dirs.push(path.clone()); // blobs/ab
                }
                std::fs::File::open(&path)
                    .unwrap()
                    .set_modified(old)
                    .unwrap();
            }
        }
    }
}

/// Runs `cairn store gc` (default grace) over and over until `stop`;
/// returns how many ran and how many blobs they removed.
fn gc_loop(env: &Env, stop: &AtomicBool) -> (u32, u64) {
    let (mut runs, mut removed) = (0, 0);
    while !stop.load(Ordering::SeqCst) || runs < 2 {
        let report = env.json(&["store", "gc"]);
        removed += report["removed"].as_array().unwrap().len() as u64;
        runs += 1;
    }
    (runs, removed)
}

fn same_files(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn gc_alongside_add_pin_build_and_release_deletes_nothing_they_use() {
    let env = Env::new();
    env.release_project();
    // One copy of the tree per round, each with its own stat cache.
    let trees: Vec<PathBuf> = (1..=2)
        .map(|r| env.tree(&format!("big{r}"), 20, 100))
        .collect();
    std::thread::sleep(Duration::from_millis(1100)); // past the "racily clean" second
    for big in &trees {
        env.ok(&["store", "add", big.to_str().unwrap()]);
        env.ok(&["store", "add", big.to_str().unwrap()]); // every file now a stat cache hit
    }
    env.in_project(&["release", "--key", "ci", "--version", "0"]);

    for (round, big) in (1..=2).zip(&trees) {
        // Everything already stored is old and unreferenced: each command
        // below reuses it, and each gc deletes whatever it can.
        env.forget_and_age();
        let stop = AtomicBool::new(false);
        let (runs, removed, release) = std::thread::scope(|s| {
            let collector = s.spawn(|| gc_loop(&env, &stop));
            let tree = env.ok(&["store", "add", big.to_str().unwrap()]);
            let pinned = env.run(&["ref", "set", "pins/big", &tree, "--create"]);
            assert!(
                pinned.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&pinned.stderr)
            );
            let version = round.to_string();
            let release = env.in_project(&["release", "--key", "ci", "--version", &version]);
            stop.store(true, Ordering::SeqCst);
            let (runs, removed) = collector.join().unwrap();
            (runs, removed, (tree, release))
        });
        assert!(
            runs >= 2 && removed > 0,
            "round {round}: {runs} collections, {removed} removed"
        );
        let (tree, release) = release;
        // All of it is still there: the pinned tree checks out whole, the
        // release shows its document, nothing is corrupt or dangling.
        let out = env.root.join(format!("out-{round}"));
        env.ok(&["store", "checkout", &tree, out.to_str().unwrap()]);
        same_files(big, &out);
        env.ok(&["release", "show", &release]);
        let verified = env.run(&["store", "verify"]);
        assert!(
            verified.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&verified.stdout)
        );
        let built: serde_json::Value =
            serde_json::from_str(&env.in_project(&["--json", "build"])).unwrap();
        assert_eq!(built[0]["cached"], true, "round {round}: {built}");
    }
}

#[test]
fn every_ref_naming_a_digest_keeps_it_and_the_rest_goes() {
    let env = Env::new();
    let pinned = env.tree("pinned", 2, 5);
    let bare = env.tree("bare", 2, 5);
    let loose = env.tree("loose", 2, 5);
    let pinned_digest = env.ok(&["store", "add", pinned.to_str().unwrap()]);
    let bare_digest = env.ok(&["store", "add", bare.to_str().unwrap()]);
    env.ok(&["store", "add", loose.to_str().unwrap()]);
    env.ok(&["ref", "set", "pins/a", &pinned_digest, "--create"]);
    // The hex alone, as a script might store it.
    let hex = bare_digest.trim_start_matches("sha256:").to_string();
    env.ok(&["ref", "set", "pins/b", &hex, "--create"]);
    env.age();
    let report = env.json(&["store", "gc"]);
    // The loose tree: 10 files and 3 directories.
    assert_eq!(report["removed"].as_array().unwrap().len(), 13, "{report}");
    for (digest, dir) in [(&pinned_digest, &pinned), (&bare_digest, &bare)] {
        let out = env.root.join(format!("out-{}", &digest[7..15]));
        env.ok(&["store", "checkout", digest, out.to_str().unwrap()]);
        same_files(dir, &out);
    }
}

#[test]
fn a_fetched_input_survives_gc_and_needs_no_second_fetch() {
    let env = Env::new();
    env.release_project();
    let vendored = env.root.join("vendor.txt");
    std::fs::write(&vendored, "bytes from far away\n").unwrap();
    let digest = format!("sha256:{}", sha256_hex(&vendored));
    let recipe = std::fs::read_to_string(env.project().join("cairn.toml"))
        .unwrap()
        .replace(
            "[inputs.src]\npath = \"src\"",
            &format!(
                "[inputs.src]\npath = \"src\"\n[inputs.vendor]\nurl = \"file://{}\"\ndigest = \"{digest}\"",
                vendored.display()
            ),
        )
        .replace(
            "mounts = { \"/\" = \"rootfs\", \"/src\" = \"src\" }",
            "mounts = { \"/\" = \"rootfs\", \"/src\" = \"src\", \"/vendor\" = \"vendor\" }",
        );
    std::fs::write(env.project().join("cairn.toml"), recipe).unwrap();
    env.in_project(&["build"]);
    // The network is gone: only the store has the fetched bytes now.
    std::fs::remove_file(&vendored).unwrap();
    let fetched = env.ok(&["ref", "list", "fetch/"]);
    assert_eq!(fetched.lines().count(), 1, "{fetched}");
    env.forget_refs("ac");
    env.age();
    let report = env.json(&["store", "gc"]);
    assert!(
        !report["removed"].as_array().unwrap().is_empty(),
        "{report}"
    );
    env.in_project(&["build"]);
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[test]
fn a_killed_writer_leaves_nothing_behind_and_a_live_one_loses_nothing() {
    let env = Env::new();
    env.ok(&["store", "add", env.tree("seed", 1, 1).to_str().unwrap()]);
    // A sparse file reads fast and writes a real temp file.
    let big = env.root.join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    let tmp = env.store.join("tmp");
    let mut writer = env
        .command(&["store", "add", big.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while temp_bytes(&tmp) < (32 << 20) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no temp file appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    writer.kill().unwrap(); // SIGKILL
    writer.wait().unwrap();
    let left = temp_bytes(&tmp);
    assert!(left >= 32 << 20, "the killed writer left nothing to clean");
    let report = env.json(&["store", "gc"]);
    assert_eq!(report["temp"]["entries"], 1, "{report}");
    assert_eq!(report["temp"]["bytes"], left, "{report}");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);

    // A live writer's temp file stays through a collection.
    let live = env
        .command(&["store", "add", big.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    while temp_bytes(&tmp) == 0 {
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(2));
    }
    let report = env.json(&["store", "gc"]);
    assert_eq!(report["temp"]["entries"], 0, "{report}");
    let out = live.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    let verified = env.json(&["store", "verify"]);
    assert_eq!(verified["checked"], 4, "{verified}"); // seed: file, 2 dirs; big

    // Any command that opens the store clears what a killed writer left.
    let mut writer = env
        .command(&["store", "add", big.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    while temp_bytes(&tmp) < (32 << 20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    env.ok(&["ref", "list"]);
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

fn temp_bytes(tmp: &Path) -> u64 {
    std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn gc_frees_what_materialized_trees_held_and_says_so() {
    let env = Env::new();
    env.release_project();
    env.in_project(&["build"]);
    let trees = env.store.join("cache/trees");
    assert!(std::fs::read_dir(&trees).unwrap().count() >= 2);
    env.forget_and_age();
    let report = env.json(&["store", "gc"]);
    let caches = &report["caches"];
    assert!(
        caches["trees"]["entries"].as_u64().unwrap() >= 2,
        "{report}"
    );
    // The trees' own copies of their files, busybox's among them.
    assert!(
        caches["trees"]["bytes"].as_u64().unwrap() > 500_000,
        "{report}"
    );
    assert_eq!(std::fs::read_dir(&trees).unwrap().count(), 0);
    let left = disk_bytes(&env.store);
    assert!(left < 200_000, "{left} bytes left");
    assert!(
        report["freed_bytes"].as_u64().unwrap() > 1_000_000,
        "{report}"
    );
}

/// The bytes of every inode under `dir`, each counted once.
fn disk_bytes(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut total = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if seen.insert(m.ino()) {
                total += m.len();
            }
        }
    }
    total
}
