//! The same commands against a local directory, a `cairn server` and an S3
//! bucket (moto), by changing only `--store`: the real binary, each
//! "machine" with its own local cache (`CAIRN_CACHE`).
//!
//! Needs `moto_server` on PATH (`pip install 'moto[server]'`) and, for the
//! release test, busybox-static (like tests/release/).

mod support;

use std::path::{Path, PathBuf};

use cairn_store::moto::Moto;
use support::cli::{example, token, Machine};

const SERVICE: &str = "busybox-hello";
const BUCKET: &str = "cairn-remote";

/// A `cairn server` on 127.0.0.1:0 with a read/write/promote token.
fn server(store: &Path) -> (support::Server, String) {
    let promote = format!("promote:{SERVICE}");
    support::Server::with_token(store, "t", &["read", "write", &promote])
}

/// A running moto_server with the tests' bucket.
fn start_moto() -> Moto {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    moto
}

/// A small tree: nested directories, an executable, a symlink.
fn source(root: &Path) -> PathBuf {
    let src = root.join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("top.txt"), "top\n").unwrap();
    std::fs::write(src.join("a/b/deep.bin"), vec![7u8; 300_000]).unwrap();
    std::fs::write(src.join("a/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    let mut perm = std::fs::metadata(src.join("a/run.sh"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(src.join("a/run.sh"), perm).unwrap();
    std::os::unix::fs::symlink("b/deep.bin", src.join("a/link")).unwrap();
    src
}

/// Every file, its bytes (or link target) and executable bit, by path.
fn listing(dir: &Path) -> Vec<(String, Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.push((rel, target.display().to_string().into_bytes(), false));
            } else if meta.is_dir() {
                stack.push(p);
            } else {
                let exec = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111;
                out.push((rel, std::fs::read(&p).unwrap(), exec != 0));
            }
        }
    }
    out.sort();
    out
}

/// `store add` on one machine, then `ls` and `checkout` on a second one
/// with an empty cache, then `gc` refused (remote) or run (local).
fn store_round_trip(url: &str, token: Option<&str>, root: &Path) {
    let src = source(root);
    let first = Machine::new(url, token, &root.join("cache-1"));
    let digest = first.ok(&["store", "add", src.to_str().unwrap()]);
    assert!(digest.starts_with("sha256:"), "{digest}");
    // Where the first machine keeps files: the store itself, or its cache.
    let files = if url.contains("://") {
        root.join("cache-1")
    } else {
        PathBuf::from(url)
    };
    let local = Machine::new(files.to_str().unwrap(), None, &root.join("unused"));
    let size = local.run(&["store", "cat", &digest]).stdout.len();
    let full = format!("{digest}/{size}");

    let second = Machine::new(url, token, &root.join("cache-2"));
    let ls = second.ok(&["store", "ls", "-r", &full]);
    assert!(
        ls.contains("a/b/deep.bin") && ls.contains("top.txt"),
        "{ls}"
    );
    assert!(
        ls.contains("link") && ls.contains("a/link -> b/deep.bin"),
        "{ls}"
    );
    let out = root.join("checkout");
    second.ok(&["store", "checkout", &full, out.to_str().unwrap()]);
    assert_eq!(listing(&out), listing(&src));
    // A rerun copies nothing and still lists the tree.
    assert_eq!(second.ok(&["store", "ls", "-r", &full]), ls);

    let gc = second.run(&["store", "gc", "--dry-run"]);
    if url.contains("://") {
        support::refused(&gc, 1, "runs where the store is");
    } else {
        assert!(gc.status.success());
    }
}

#[test]
fn store_commands_on_a_local_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    store_round_trip(store.to_str().unwrap(), None, tmp.path());
}

#[test]
fn store_commands_on_a_cairn_server() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, token) = server(&tmp.path().join("server-store"));
    store_round_trip(&server.url, Some(&token), tmp.path());
}

#[test]
fn store_commands_on_s3() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = start_moto();
    store_round_trip(&moto.url(BUCKET, "round-trip"), None, tmp.path());
}

/// The bytes of `digest` as `files` (a local store) holds them.
fn size_in(files: &Path, digest: &str) -> usize {
    let local = Machine::new(files.to_str().unwrap(), None, files);
    let out = local.run(&["store", "cat", digest]);
    assert!(
        out.status.success(),
        "{digest} is not in {}",
        files.display()
    );
    out.stdout.len()
}

/// The one step of `cairn --json build` on `m`.
fn build_step(m: &Machine) -> serde_json::Value {
    let steps: serde_json::Value = serde_json::from_str(&m.ok(&["--json", "build"])).unwrap();
    assert_eq!(steps.as_array().unwrap().len(), 1, "{steps}");
    steps[0].clone()
}

/// The remote as a shared action cache: machine A (empty cache) builds the
/// example with its root file system pinned by digest and present only on
/// the remote; machine B (another empty cache) gets the step from the
/// remote's action cache without running it; a third empty cache checks the
/// output out through the remote. Returns the output tree (with its size).
fn build_round_trip(url: &str, token: Option<&str>, root: &Path) -> String {
    let project = example(root, &root.join("scratch-store"));
    let machine = |cache: &str| Machine {
        dir: Some(project.clone()),
        ..Machine::new(url, token, &root.join(cache))
    };
    // The rootfs goes to the remote and the recipe pins it; the directory
    // is gone, so every build must pull the tree from the remote.
    let prep = machine("cache-prep");
    let rootfs = prep.ok(&["store", "add", "rootfs"]);
    let pinned = format!("{rootfs}/{}", size_in(&root.join("cache-prep"), &rootfs));
    let recipe = std::fs::read_to_string(project.join("cairn.toml")).unwrap();
    let recipe = recipe.replace(
        "[inputs.rootfs]\npath = \"rootfs\"",
        &format!("[inputs.rootfs]\ntree = {pinned:?}"),
    );
    assert!(
        recipe.contains(&pinned),
        "the example's rootfs input changed"
    );
    std::fs::write(project.join("cairn.toml"), recipe).unwrap();
    std::fs::remove_dir_all(project.join("rootfs")).unwrap();

    let a = build_step(&machine("cache-a"));
    assert_eq!((&a["cached"], &a["remote"]), (&false.into(), &false.into()));

    let b = build_step(&machine("cache-b"));
    assert_eq!(b["cached"], true, "{b}");
    assert_eq!(b["remote"], true, "{b}");
    assert_eq!(b["seconds"], 0.0, "the step ran on B: {b}");
    assert_eq!(b["output"], a["output"]);
    assert_eq!(b["action_digest"], a["action_digest"]);
    // The entry is now in B's own cache.
    let again = build_step(&machine("cache-b"));
    assert_eq!(
        (&again["cached"], &again["remote"]),
        (&true.into(), &false.into())
    );

    let output = a["output"].as_str().unwrap();
    let full = format!("{output}/{}", size_in(&root.join("cache-b"), output));
    let checkout = root.join("checkout");
    machine("cache-c").ok(&["store", "checkout", &full, checkout.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(checkout.join("share/greeting.txt")).unwrap(),
        std::fs::read(project.join("src/greeting.txt")).unwrap()
    );
    full
}

#[test]
fn builds_share_a_cairn_servers_action_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let server_store = tmp.path().join("server-store");
    let (server, writer) = server(&server_store);
    let output = build_round_trip(&server.url, Some(&writer), tmp.path());
    // The output and the action-cache entry are in the server's own store.
    let on_server = Machine::new(server_store.to_str().unwrap(), None, tmp.path());
    let ls = on_server.ok(&["store", "ls", "-r", &output]);
    assert!(
        ls.contains("bin/hello") && ls.contains("share/greeting.txt"),
        "{ls}"
    );
    let entries = on_server.ok(&["ref", "list", "ac/"]);
    assert_eq!(entries.lines().count(), 1, "{entries}");

    // A read-only token still builds: a step it runs is not published,
    // which is a warning, not a failure.
    let read_only = token(&server_store, "ro", &["read"]);
    let project = tmp.path().join("busybox-hello");
    std::fs::write(project.join("src/greeting.txt"), "changed\n").unwrap();
    let reader = Machine {
        dir: Some(project),
        ..Machine::new(&server.url, Some(&read_only), &tmp.path().join("cache-ro"))
    };
    let out = reader.run(&["build"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("not published to the remote cache"), "{err}");
    let entries = on_server.ok(&["ref", "list", "ac/"]);
    assert_eq!(entries.lines().count(), 1, "{entries}");
}

#[test]
fn builds_share_an_s3_action_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = start_moto();
    let url = moto.url(BUCKET, "builds");
    build_round_trip(&url, None, tmp.path());
    let remote = Machine::new(&url, None, &tmp.path().join("cache-d"));
    let entries = remote.ok(&["ref", "list", "ac/"]);
    assert_eq!(entries.lines().count(), 1, "{entries}");
}

/// Trust policy for prod: releases by `ci`, channel statements by `ops`.
fn policy(m: &Machine, root: &Path) -> String {
    let list: serde_json::Value = serde_json::from_str(&m.ok(&["--json", "key", "list"])).unwrap();
    let ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| format!("{:?}", k["key_id"].as_str().unwrap()))
        .collect();
    let path = root.join("policy.toml");
    let text = format!(
        "[[channel]]\nservice = {SERVICE:?}\nchannel = \"prod\"\nkeys = [{}]\nthreshold = 1\n",
        ids.join(", ")
    );
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `release` on one machine, then `promote`, `channel verify` and `verify`
/// on another with an empty cache, all through `url`.
fn release_round_trip(url: &str, token: Option<&str>, root: &Path) {
    let project = example(root, &root.join("scratch-store"));
    let machine = |cache: &str| Machine {
        keys: Some(root.join("keys")),
        dir: Some(project.clone()),
        ..Machine::new(url, token, &root.join(cache))
    };
    let ci = machine("cache-ci");
    ci.ok(&["key", "generate", "ci"]);
    ci.ok(&["key", "generate", "ops"]);
    let release = ci.ok(&["release", "--key", "ci", "--version", "1.0"]);
    assert!(release.starts_with("sha256:"), "{release}");
    // `build` runs in the local cache (from its action cache here).
    let built = ci.ok(&["build"]);
    assert!(built.starts_with("sha256:"), "{built}");
    let cache = Machine::new(
        root.join("cache-ci").to_str().unwrap(),
        None,
        &root.join("unused"),
    );
    let size = cache.run(&["store", "cat", &release]).stdout.len();
    let full = format!("{release}/{size}");

    // Another machine, empty cache: show, promote, verify the channel, rebuild.
    let ops = machine("cache-ops");
    let shown: serde_json::Value =
        serde_json::from_str(&ops.ok(&["--json", "release", "show", &full])).unwrap();
    assert_eq!(shown["document"]["version"], "1.0");
    ops.ok(&["promote", &full, "--channel", "prod", "--key", "ops"]);
    let policy = policy(&ops, root);
    let accepted = ops.ok(&["channel", "verify", SERVICE, "prod", "--policy", &policy]);
    assert!(accepted.contains("1.0"), "{accepted}");
    let reproduced = ops.ok(&["verify", &full]);
    assert!(reproduced.starts_with("reproduced:"), "{reproduced}");

    // A second release pushes only what the remote lacks and shows there.
    let again = ci.ok(&["release", "--key", "ci", "--version", "1.1"]);
    assert_ne!(again, release);
    let shown = ci.ok(&["--json", "release", "show", &again]);
    assert!(shown.contains("\"1.1\""), "{shown}");
}

#[test]
fn release_promote_and_verify_through_a_cairn_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server_store = tmp.path().join("server-store");
    let (server, token) = server(&server_store);
    release_round_trip(&server.url, Some(&token), tmp.path());
    // The release is in the server's own directory store.
    let on_server = Machine::new(server_store.to_str().unwrap(), None, tmp.path());
    let releases = on_server.ok(&["ref", "list", &format!("releases/{SERVICE}/")]);
    assert_eq!(releases.lines().count(), 2, "{releases}");
}

#[test]
fn release_promote_and_verify_through_s3() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = start_moto();
    release_round_trip(&moto.url(BUCKET, "releases"), None, tmp.path());
}
