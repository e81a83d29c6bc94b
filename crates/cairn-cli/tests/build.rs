//! `cairn build` end to end: the real binary, the real sandbox, a busybox
//! root file system made in the test from Debian's `busybox-static`
//! (`/bin/busybox`; the tests fail if it is missing, `.ci/run` installs it).

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::cli::{text, Machine};
use support::project::Project;

const REPRODUCIBLE: &str = "cp input.txt $OUT/copy; echo built > $OUT/built";

#[test]
fn second_build_is_a_cache_hit_and_check_passes() {
    let p = Project::busybox(REPRODUCIBLE, "");
    let first = p.build_json(&[]);
    assert_eq!(first["cached"], false);
    let second = p.build_json(&[]);
    assert_eq!(second["cached"], true);
    assert_eq!(first["output"], second["output"]);
    assert_eq!(first["action_digest"], second["action_digest"]);
    let checked = p.build_json(&["--check"]);
    assert_eq!(checked["output"], first["output"]);
    let tree = first["output"].as_str().unwrap();
    assert_eq!(p.cat(tree, "copy"), "an input\n");
    // Plain output: just the digest.
    let out = p.build(&[]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), tree);
    // A changed input is a new action.
    std::fs::write(p.dir.join("src/input.txt"), "changed\n").unwrap();
    let third = p.build_json(&[]);
    assert_eq!(third["cached"], false);
    assert_ne!(third["action_digest"], first["action_digest"]);
}

#[test]
fn check_fails_for_a_step_that_is_not_reproducible() {
    let script = "sleep 1; date +%s%N > $OUT/stamp; cat /proc/sys/kernel/random/uuid > $OUT/uuid; echo same > $OUT/same";
    let p = Project::busybox(script, "");
    p.build_json(&[]);
    let err = p.build_fails(&["--check"]);
    assert!(err.contains("not reproducible"), "{err}");
    for name in ["stamp", "uuid"] {
        let line = err
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} not listed: {err}"));
        assert_eq!(line.matches("sha256:").count(), 2, "{line}");
    }
    assert!(
        !err.lines().any(|l| l.trim_start().starts_with("same:")),
        "{err}"
    );
}

#[test]
fn a_cache_entry_missing_an_output_blob_is_rebuilt() {
    let p = Project::busybox("echo unique-output-content > $OUT/file", "");
    let first = p.build_json(&[]);
    let tree = first["output"].as_str().unwrap().to_owned();
    let entry = p
        .ls(&tree)
        .into_iter()
        .find(|e| e["path"] == "file")
        .unwrap();
    let hex = entry["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    std::fs::remove_file(p.store_dir().join("blobs").join(&hex[..2]).join(&hex)).unwrap();
    let second = p.build_json(&[]);
    assert_eq!(
        second["cached"], false,
        "an incomplete entry must be a miss"
    );
    assert_eq!(second["output"], first["output"]);
    assert_eq!(p.cat(&tree, "file"), "unique-output-content\n");
    assert_eq!(p.build_json(&[])["cached"], true);
}

/// Where a local store keeps the blob of `bytes`.
fn blob_of(store: &Path, bytes: &[u8]) -> PathBuf {
    let hex = cairn_digest::Digest::of(bytes).hex();
    store.join("blobs").join(&hex[..2]).join(&hex)
}

/// A fully cached build looks at its source files, as `git status` does,
/// not at the store's copies of them (it reads none); a step that runs
/// checks the inputs it mounts first, and stores again what the store
/// lost.
#[test]
fn a_cached_build_needs_no_input_blob_and_a_step_that_runs_stores_a_lost_one_again() {
    let p = Project::busybox(REPRODUCIBLE, "");
    // A source file the output does not hold (the output is checked whole
    // on a hit).
    let other = b"only an input\n";
    std::fs::write(p.dir.join("src/other.txt"), other).unwrap();
    // The stat cache vouches only for files not changed within a second
    // of the snapshot that saw them.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let first = p.build_json(&[]);
    let blob = blob_of(&p.store_dir(), other);
    std::fs::remove_file(&blob).unwrap();
    let second = p.build_json(&[]);
    assert_eq!(second["cached"], true);
    assert_eq!(second["output"], first["output"]);
    assert!(
        !blob.exists(),
        "the cached build looked at the input's blob"
    );

    let third = p.build_json(&["--no-cache"]);
    assert_eq!(third["cached"], false);
    assert_eq!(third["output"], first["output"]);
    assert_eq!(std::fs::read(&blob).unwrap(), other);
    let out = p.command(&["store", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn malformed_recipes_are_reported_with_file_line_and_column() {
    let p = Project::busybox(REPRODUCIBLE, "");
    let head = "[service]\nname = \"t\"\n[inputs.rootfs]\npath = \"rootfs\"\n";
    let cases = [
        ("type error", format!("{head}[steps.a]\nmounts = {{ \"/\" = \"rootfs\" }}\nrun = [\"true\"]\ntimeout = 5\n")),
        ("unknown key", format!("{head}[steps.a]\nmounts = {{ \"/\" = \"rootfs\" }}\nrun = [\"true\"]\nbogus = 1\n")),
        ("cycle", format!("{head}[steps.a]\nmounts = {{ \"/\" = \"steps.b\" }}\nrun = [\"true\"]\n[steps.b]\nmounts = {{ \"/\" = \"steps.a\" }}\nrun = [\"true\"]\n")),
        ("undefined input", format!("{head}[steps.a]\nmounts = {{ \"/\" = \"nope\" }}\nrun = [\"true\"]\n")),
        ("two mounts at one path", format!("{head}[steps.a]\nmounts = {{ \"/src\" = \"rootfs\", \"/src/\" = \"rootfs\" }}\nrun = [\"true\"]\n")),
    ];
    for (what, text) in cases {
        p.write("cairn.toml", &text);
        let err = p.build_fails(&[]);
        let at = err
            .find("cairn.toml:")
            .unwrap_or_else(|| panic!("{what}: {err}"));
        let rest = &err[at + "cairn.toml:".len()..];
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().unwrap();
        let col = parts.next().unwrap_or("");
        assert!(
            line.parse::<u32>().is_ok() && col.parse::<u32>().is_ok(),
            "{what}: no line:column in {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
    }
}

#[test]
fn a_fetch_with_the_wrong_digest_stores_nothing_and_shows_both_digests() {
    let p = Project::busybox(REPRODUCIBLE, "");
    let file = p.root.join("vendor.txt");
    std::fs::write(&file, "the real bytes\n").unwrap();
    let declared = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let text = p.recipe().replace(
        "[steps.build]\nmounts = { \"/\" = \"rootfs\", \"/src\" = \"src\" }",
        &format!(
            "[inputs.vendor]\nurl = \"file://{}\"\ndigest = \"{declared}\"\n[steps.build]\nmounts = {{ \"/\" = \"rootfs\", \"/src\" = \"vendor\" }}",
            file.display()
        ),
    );
    p.write("cairn.toml", &text);
    let err = p.build_fails(&[]);
    let real = String::from_utf8(
        Command::new("sha256sum")
            .arg(&file)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let real_hex = real.split_whitespace().next().unwrap();
    assert!(err.contains(declared), "{err}");
    assert!(err.contains(real_hex), "{err}");
    let hex = &declared["sha256:".len()..];
    assert!(!p
        .store_dir()
        .join("blobs")
        .join(&hex[..2])
        .join(hex)
        .exists());
}

#[test]
fn a_failing_step_shows_its_exit_code_and_log_and_is_not_cached() {
    let p = Project::busybox("echo some-log-line; echo to-stderr >&2; exit 3", "");
    for _ in 0..2 {
        let err = p.build_fails(&[]);
        assert!(err.contains("exited with code 3"), "{err}");
        assert!(err.contains("  | some-log-line"), "{err}");
        assert!(err.contains("  | to-stderr"), "{err}");
        assert!(err.contains("full log: "), "{err}");
        assert!(!err.contains("[build] cached"), "{err}");
    }
    let logs: Vec<_> = std::fs::read_dir(p.store_dir().join("cache/logs"))
        .unwrap()
        .collect();
    assert_eq!(logs.len(), 1);
}

#[test]
fn a_missing_required_output_is_named() {
    let p = Project::busybox("echo nothing", "outputs = [\"bin/app\"]");
    let err = p.build_fails(&[]);
    assert!(err.contains("/out/bin/app"), "{err}");
}

#[test]
fn a_step_over_its_timeout_is_killed_and_reported() {
    let p = Project::busybox("sleep 60", "timeout = \"1s\"");
    let started = std::time::Instant::now();
    let err = p.build_fails(&[]);
    assert!(err.contains("timed out"), "{err}");
    assert!(started.elapsed().as_secs() < 30);
}

#[test]
fn a_step_sees_nothing_of_the_host() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("release.key"), "secret").unwrap();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    // The store path is only known after Project::new; the script reads it
    // from the file the test writes into src/ below.
    let script = format!(
        r#"r=$OUT/report
for p in $(cat paths); do test -e "$p" && echo "visible $p" >> $r; done
for p in $(cat paths); do grep -a -q -F "$p" /proc/1/cmdline && echo "cmdline shows $p" >> $r; done
env | grep -q -e AWS_SECRET -e CAIRN_TOKEN && echo "env leaked" >> $r
cat /proc/1/environ > /dev/null 2>&1 && echo "pid 1 environ readable" >> $r
nc -w 2 127.0.0.1 {port} </dev/null && echo "tcp connected" >> $r
sleep 987654 &
echo written > /src/input.txt || true
ln -s input.txt $OUT/link
echo done >> $r"#
    );
    let p = Project::busybox(
        &script,
        "mounts = { \"/\" = \"rootfs\", \"/src\" = { input = \"src\", writable = true } }",
    );
    // Drop the default mounts line: the extra one replaces it.
    let recipe = p.recipe();
    p.write(
        "cairn.toml",
        &recipe.replacen(
            "mounts = { \"/\" = \"rootfs\", \"/src\" = \"src\" }\n",
            "",
            1,
        ),
    );
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "cairn_secret_token").unwrap();
    let paths = [
        p.store_dir().display().to_string(),
        home,
        keys.display().to_string(),
        token_file.display().to_string(),
    ];
    std::fs::write(p.dir.join("src/paths"), paths.join("\n")).unwrap();
    let src_before = p.ok(&["store", "add", p.dir.join("src").to_str().unwrap()]);
    // The keys come from `CAIRN_KEYS`, as set below: no `--keys`.
    let keys_from_env = Machine {
        keys: None,
        ..p.machine.clone()
    };
    let out = keys_from_env
        .command(&["--json", "--token-file", token_file.to_str().unwrap()])
        .args(["build", "-C", p.dir.to_str().unwrap()])
        .env("AWS_SECRET_ACCESS_KEY", "fake")
        .env("CAIRN_TOKEN", "cairn_secret_env_token")
        .env("CAIRN_KEYS", &keys)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let steps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tree = steps[0]["output"].as_str().unwrap().to_owned();
    assert_eq!(p.cat(&tree, "report"), "done\n", "the step saw the host");
    assert!(
        listener.accept().is_err(),
        "the step reached a host TCP port"
    );
    // The backgrounded sleep did not survive the step.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("987654"),
            "sleep survived"
        );
    }
    // The writable mount's change reached neither the source nor the store.
    assert_eq!(
        std::fs::read_to_string(p.dir.join("src/input.txt")).unwrap(),
        "an input\n"
    );
    assert_eq!(
        p.ok(&["store", "add", p.dir.join("src").to_str().unwrap()]),
        src_before
    );
    p.ok(&["store", "verify"]);
    // The output symlink is stored as a symlink, not followed.
    let link = p
        .ls(&tree)
        .into_iter()
        .find(|e| e["path"] == "link")
        .unwrap();
    assert_eq!(link["kind"], "link");
    assert_eq!(link["target"], "input.txt");
}

/// Runs `p`'s setup script `script` then `cairn build -C DIR ARGS…`,
/// both on `store` (a fresh one); returns the output digest.
fn build_example(p: &Project, script: &str, store: &Path, args: &[&str]) -> String {
    let machine = p.with(store.to_str().unwrap(), None);
    machine.script(&p.dir.join(script));
    let dir = p.dir.to_str().unwrap();
    let all: Vec<&str> = ["build", "-C", dir].iter().chain(args).copied().collect();
    machine.ok(&all)
}

#[test]
fn the_busybox_example_builds_from_a_clean_store() {
    let p = Project::example("busybox-hello");
    let digest = build_example(&p, "make-rootfs.sh", &p.root.join("store"), &[]);
    assert!(digest.starts_with("sha256:"), "{digest}");
}

#[test]
fn the_c_example_is_reproducible_across_clean_stores() {
    let p = Project::example("c-hello");
    let a = build_example(&p, "make-toolchain.sh", &p.root.join("a"), &[]);
    let b = build_example(&p, "make-toolchain.sh", &p.root.join("b"), &[]);
    assert_eq!(a, b, "two clean builds differ");
    let checked = build_example(&p, "make-toolchain.sh", &p.root.join("b"), &["--check"]);
    assert_eq!(checked, a);
}

#[test]
fn a_store_named_by_a_relative_path_builds() {
    // The sandbox's mounts need absolute sources: the materialized trees
    // of a relative store are resolved against the working directory.
    let p = Project::example("busybox-hello");
    let absolute = build_example(&p, "make-rootfs.sh", &p.root.join("store"), &[]);
    let relative = Machine {
        store: Some("store".into()),
        dir: Some(p.root.clone()),
        ..Machine::default()
    };
    let dir = p.dir.to_str().unwrap();
    assert_eq!(relative.ok(&["build", "--no-cache", "-C", dir]), absolute);
}
