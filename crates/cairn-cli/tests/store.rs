//! `cairn store` and `cairn ref` end to end: the real binary against a real
//! local store, including the faults a user can meet.

mod support;

use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::cli::CAIRN;
use support::project::Project;

/// A local store in a temp directory (an empty [`Project`], which it
/// derefs to), and the trees tests add to it.
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

    /// Runs and expects exit 1 with a one-line error; returns it.
    fn fails(&self, args: &[&str]) -> String {
        self.machine.refused(args, 1, "")
    }

    fn tree(&self, name: &str, files: usize) -> PathBuf {
        let dir = self.root.join(name);
        for i in 0..files {
            let sub = dir.join(format!("d{}", i % 7));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(
                sub.join(format!("f{i}")),
                format!("content of file {i}\n").repeat(i % 13 + 1),
            )
            .unwrap();
        }
        dir
    }
}

fn blob_file(store: &Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    store.join("blobs").join(&hex[..2]).join(hex)
}

fn damage(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn add_ls_checkout_round_trip() {
    let env = Env::new();
    let src = env.tree("src", 30);
    let digest = env.ok(&["store", "add", src.to_str().unwrap()]);
    assert!(digest.starts_with("sha256:"), "{digest}");
    let listing = env.ok(&["store", "ls", &digest]);
    assert_eq!(listing.lines().count(), 7, "{listing}");
    let out = env.root.join("out");
    env.ok(&["store", "checkout", &digest, out.to_str().unwrap()]);
    assert_eq!(env.ok(&["store", "add", out.to_str().unwrap()]), digest);
    let report: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "store", "verify"])).unwrap();
    assert_eq!(report["corrupt"].as_array().unwrap().len(), 0);
}

#[test]
fn bit_flipped_and_truncated_blobs_are_named() {
    let env = Env::new();
    let file = env.root.join("f");
    std::fs::write(&file, "precious bytes").unwrap();
    let flipped = env.ok(&["store", "add", file.to_str().unwrap()]);
    std::fs::write(&file, "other precious bytes").unwrap();
    let truncated = env.ok(&["store", "add", file.to_str().unwrap()]);
    damage(&blob_file(&env.store, &flipped), |b| b[3] ^= 1);
    damage(&blob_file(&env.store, &truncated), |b| b.truncate(4));

    let out = env.run(&["store", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("corrupt: {flipped}")), "{text}");
    assert!(text.contains(&format!("corrupt: {truncated}")), "{text}");

    let out = env.run(&["store", "cat", &flipped]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "a corrupt blob was printed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));
}

#[test]
fn missing_blob_under_a_tree_is_named_on_checkout() {
    let env = Env::new();
    let src = env.tree("src", 3);
    let digest = env.ok(&["store", "add", src.to_str().unwrap()]);
    let victim = env.ok(&["store", "add", src.join("d1/f1").to_str().unwrap()]);
    std::fs::remove_file(blob_file(&env.store, &victim)).unwrap();
    let err = env.fails(&[
        "store",
        "checkout",
        &digest,
        env.root.join("out").to_str().unwrap(),
    ]);
    assert!(err.contains(&victim), "{err}");
}

#[test]
fn bad_arguments_get_one_line_errors() {
    let env = Env::new();
    env.ok(&[
        "ref",
        "set",
        "a/ref",
        "so that the store exists",
        "--create",
    ]);
    for bad in [
        "sha256:xyz",
        "md5:00",
        "sha256:",
        &format!("sha256:{}", "A".repeat(64)),
    ] {
        let err = env.fails(&["store", "cat", bad]);
        assert!(err.contains("digest"), "{bad}: {err}");
    }
    let err = env.fails(&["store", "add", "/nonexistent/path"]);
    assert!(err.contains("/nonexistent/path"), "{err}");
    let out = env.run(&["store", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn concurrent_adds_of_overlapping_trees_both_succeed() {
    let env = Env::new();
    let a = env.tree("a", 200);
    let b = env.tree("b", 300); // shares the first 200 files' contents with a
    env.ok(&["store", "add", env.tree("seed", 1).to_str().unwrap()]); // create the store once
    let spawn = |p: &Path| env.command(&["store", "add", p.to_str().unwrap()]).output();
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| spawn(&a));
        let tb = s.spawn(|| spawn(&b));
        (ta.join().unwrap().unwrap(), tb.join().unwrap().unwrap())
    });
    assert!(ra.status.success() && rb.status.success());
    assert_eq!(env.run(&["store", "verify"]).status.code(), Some(0));
    for (out, dir) in [(ra, &a), (rb, &b)] {
        let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let dest = env.root.join(format!(
            "{}-out",
            dir.file_name().unwrap().to_str().unwrap()
        ));
        env.ok(&["store", "checkout", &digest, dest.to_str().unwrap()]);
    }
}

#[test]
fn processes_racing_a_compare_and_swap_have_one_winner() {
    let env = Env::new();
    let v0 = env.ok(&["ref", "set", "race/ref", "start", "--create"]);
    let children: Vec<_> = (0..8)
        .map(|i| {
            env.command(&[
                "ref",
                "set",
                "race/ref",
                &format!("writer-{i}"),
                "--expect",
                &v0,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outcomes: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let winners = outcomes.iter().filter(|o| o.status.success()).count();
    assert_eq!(winners, 1);
    for loser in outcomes.iter().filter(|o| !o.status.success()) {
        assert_eq!(loser.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&loser.stderr).contains("changed concurrently"));
    }
    let value = env.ok(&["ref", "get", "race/ref"]);
    assert!(value.starts_with("writer-"), "{value}");
}

#[test]
fn a_full_file_system_fails_cleanly_and_keeps_what_was_stored() {
    let env = Env::new();
    let mnt = env.root.join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "this test needs root to mount a small tmpfs"
    );
    let _unmount = Unmount(mnt.clone());
    let store = mnt.join("store");
    let run = |args: &[&str]| {
        Command::new(CAIRN)
            .arg("--store")
            .arg(&store)
            .args(args)
            .output()
            .unwrap()
    };

    let small = env.tree("small-tree", 20);
    let first = run(&["store", "add", small.to_str().unwrap()]);
    assert!(first.status.success());
    let big = env.root.join("big");
    std::fs::write(&big, vec![42u8; 4 << 20]).unwrap();
    let out = run(&["store", "add", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left"), "{err}");
    assert_eq!(
        std::fs::read_dir(store.join("tmp")).unwrap().count(),
        0,
        "temp file left behind"
    );
    assert!(run(&["store", "verify"]).status.success());
    let digest = String::from_utf8(first.stdout).unwrap();
    let out = run(&[
        "store",
        "checkout",
        digest.trim(),
        env.root.join("after").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap()
}

#[test]
fn ref_set_refuses_what_the_store_lacks_unless_told_and_verify_names_it() {
    let env = Env::new();
    let src = env.tree("src", 5);
    let tree = env.ok(&["store", "add", src.to_str().unwrap()]);
    let never = format!("sha256:{}/5", "ab".repeat(32));
    let err = env.fails(&["ref", "set", "pins/ghost", &never, "--create"]);
    assert!(
        err.contains(&never) && err.contains("--allow-dangling"),
        "{err}"
    );
    assert_eq!(
        env.run(&["ref", "get", "pins/ghost"]).status.code(),
        Some(1)
    );

    // A tree missing one of its files is refused too, naming the file.
    let victim = env.ok(&["store", "add", src.join("d1/f1").to_str().unwrap()]);
    std::fs::remove_file(blob_file(&env.store, &victim)).unwrap();
    let err = env.fails(&["ref", "set", "pins/src", &tree, "--create"]);
    assert!(err.contains(victim.trim_start_matches("sha256:")), "{err}");

    // Told, it sets the ref; verify then reports it and fails.
    env.ok(&[
        "ref",
        "set",
        "pins/src",
        &tree,
        "--create",
        "--allow-dangling",
    ]);
    let out = env.run(&["store", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("dangling: ref pins/src"), "{text}");
    let report = json(&String::from_utf8(env.run(&["--json", "store", "verify"]).stdout).unwrap());
    assert_eq!(report["dangling"][0]["ref"], "pins/src", "{report}");
    assert_eq!(report["corrupt"].as_array().unwrap().len(), 0);

    // Stored again, all is whole, and a plain value was never checked.
    env.ok(&["store", "add", src.to_str().unwrap()]);
    env.ok(&["store", "verify"]);
    env.ok(&["ref", "set", "notes/plain", "just words", "--create"]);
}

#[test]
fn re_adding_after_a_blob_was_lost_stores_it_again() {
    let env = Env::new();
    let src = env.tree("src", 40);
    std::thread::sleep(std::time::Duration::from_millis(1100)); // not "racily clean"
    let tree = env.ok(&["store", "add", src.to_str().unwrap()]);
    let again = json(&env.ok(&["--json", "store", "add", src.to_str().unwrap()]));
    assert_eq!(again["files_read"], 0);
    let victim = env.ok(&["store", "add", src.join("d3/f3").to_str().unwrap()]);
    std::fs::remove_file(blob_file(&env.store, &victim)).unwrap();
    let readd = json(&env.ok(&["--json", "store", "add", src.to_str().unwrap()]));
    assert_eq!(readd["digest"], tree.as_str());
    assert_eq!(readd["files_read"], 1, "{readd}");
    env.ok(&["store", "verify"]);
    env.ok(&[
        "store",
        "checkout",
        &tree,
        env.root.join("out").to_str().unwrap(),
    ]);
}

#[test]
fn a_checkout_cannot_damage_the_store_unless_linked_on_purpose() {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let src = env.tree("src", 10);
    let tree = env.ok(&["store", "add", src.to_str().unwrap()]);
    let out = env.root.join("out");
    env.ok(&["store", "checkout", &tree, out.to_str().unwrap()]);
    let file = out.join("d1/f1");
    let blob = blob_file(
        &env.store,
        &env.ok(&["store", "add", file.to_str().unwrap()]),
    );
    assert_ne!(
        std::fs::metadata(&file).unwrap().ino(),
        std::fs::metadata(&blob).unwrap().ino()
    );
    // What root does to a checked-out file without a second thought.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(b"local change\n").unwrap();
    env.ok(&["store", "verify"]);

    // --link hands out the store's own files, as its help says.
    let linked = env.root.join("linked");
    env.ok(&[
        "store",
        "checkout",
        "--link",
        &tree,
        linked.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::metadata(linked.join("d1/f1")).unwrap().ino(),
        std::fs::metadata(&blob).unwrap().ino()
    );
    let help = env.ok(&["store", "checkout", "--help"]);
    assert!(
        help.contains("root") && help.contains("corrupts the store"),
        "{help}"
    );
}
