//! Releases that travel: a release made on one machine through a `cairn
//! server` is shown, promoted and rebuilt on another machine with an empty
//! cache, in an empty directory, by the digest `cairn release` printed;
//! copied to a second store (a local directory) with everything a consumer
//! needs, it is shown, promoted, trusted and rebuilt there too; a channel
//! copy takes its history and signatures. The real binary throughout.
//!
//! Needs busybox-static (the example's root file system), like
//! tests/release/.

mod support;

use std::path::{Path, PathBuf};
use support::cli::{example, Machine, EXAMPLE};

const SERVICE: &str = "busybox-hello";

/// A `cairn server` over `store` with a read/write/promote token.
fn server(store: &Path) -> (support::Server, String) {
    let promote = format!("promote:{SERVICE}");
    support::Server::with_token(store, "t", &["read", "write", &promote])
}

/// The example project with its root file system pinned as a tree written
/// without its size (as `cairn store add` prints it) that only the remote
/// holds: the directory itself is gone.
fn project_on(remote: &Machine, root: &Path) -> PathBuf {
    let project = example(root, &root.join("scratch-store"));
    let prep = Machine {
        cache: Some(root.join("cache-prep")),
        dir: Some(project.clone()),
        ..remote.clone()
    };
    let rootfs = prep.ok(&["store", "add", "rootfs"]);
    assert!(!rootfs.contains('/'), "printed with its size: {rootfs}");
    let recipe = std::fs::read_to_string(project.join("cairn.toml")).unwrap();
    let pinned = recipe.replace(
        "[inputs.rootfs]\npath = \"rootfs\"",
        &format!("[inputs.rootfs]\ntree = {rootfs:?}"),
    );
    assert_ne!(pinned, recipe, "the example's rootfs input changed");
    std::fs::write(project.join("cairn.toml"), pinned).unwrap();
    std::fs::remove_dir_all(project.join("rootfs")).unwrap();
    project
}

#[test]
fn a_release_travels_to_other_machines_and_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (srv, token) = server(&root.join("server-store"));
    let base = Machine {
        keys: Some(root.join("keys")),
        dir: Some(root.to_path_buf()),
        ..Machine::new(&srv.url, Some(&token), &root.join("cache-ci"))
    };
    let project = project_on(&base, root);
    let ci = Machine {
        dir: Some(project.clone()),
        ..base.clone()
    };
    ci.ok(&["key", "generate", "ci"]);
    ci.ok(&["key", "generate", "ops"]);
    // The pinned rootfs (no size, not in this cache) comes from the server.
    let release = ci.ok(&["release", "--key", "ci", "--version", "1.0"]);
    assert!(!release.contains('/'), "{release}");

    // Another machine: empty cache, empty directory, no checkout.
    let ops = Machine {
        cache: Some(root.join("cache-ops")),
        dir: Some(root.join("ops-dir")),
        ..base.clone()
    };
    // Without a token the server's refusal is what is reported.
    let err = ops
        .with(&srv.url, None)
        .fails(&["release", "show", &release]);
    assert!(err.contains("401") && err.contains("--token"), "{err}");
    assert!(!err.contains("size"), "{err}");

    let shown: serde_json::Value =
        serde_json::from_str(&ops.ok(&["--json", "release", "show", &release])).unwrap();
    assert_eq!(shown["document"]["version"], "1.0");
    // The release's ref, as `ref list` shows it, is a release argument too.
    let refs = ops.ok(&["ref", "list", &format!("releases/{SERVICE}/")]);
    assert_eq!(refs.lines().count(), 1, "{refs}");
    ops.ok(&["promote", refs.trim(), "--channel", "prod", "--key", "ops"]);
    // The source changes after the release: the rebuild does not care.
    std::fs::write(project.join("src/greeting.txt"), "changed\n").unwrap();
    let reproduced = ops.ok(&["verify", &release]);
    assert!(reproduced.starts_with("reproduced:"), "{reproduced}");
    assert!(reproduced.contains("1.0"), "{reproduced}");

    // A second store: the release copied there with what a consumer needs.
    let second = root.join("second-store");
    let copied = ops.ok(&["store", "copy", &release, "--to", second.to_str().unwrap()]);
    assert!(copied.contains("copied release"), "{copied}");
    let there = Machine {
        dir: Some(root.join("there-dir")),
        ..ops.with(second.to_str().unwrap(), None)
    };
    let shown = there.ok(&["release", "show", &release]);
    assert!(shown.contains("version   1.0"), "{shown}");
    there.ok(&["promote", &release, "--channel", "prod", "--key", "ops"]);
    let policy = root.join("policy.toml");
    let policy = policy.to_str().unwrap();
    there.ok(&[
        "policy", "add", policy, SERVICE, "prod", "--key", "ci", "--key", "ops",
    ]);
    let accepted = there.ok(&["channel", "verify", SERVICE, "prod", "--policy", policy]);
    assert!(accepted.starts_with("accepted:"), "{accepted}");
    let reproduced = there.ok(&["verify", &release]);
    assert!(reproduced.starts_with("reproduced:"), "{reproduced}");

    // A channel copy: history and signatures, and it never rolls back.
    let v2 = ci.ok(&["--json", "release", "--key", "ci", "--version", "2.0"]);
    let v2: serde_json::Value = serde_json::from_str(&v2).unwrap();
    let v2 = v2["release"].as_str().unwrap().to_string();
    ops.ok(&["promote", &v2, "--channel", "prod", "--key", "ops"]);
    let third = root.join("third-store");
    let channel = format!("channels/{SERVICE}/prod");
    let copied = ops.ok(&["store", "copy", &channel, "--to", third.to_str().unwrap()]);
    assert!(copied.contains("created"), "{copied}");
    let third_m = Machine {
        dir: Some(root.join("third-dir")),
        ..ops.with(third.to_str().unwrap(), None)
    };
    let history: serde_json::Value =
        serde_json::from_str(&third_m.ok(&["--json", "channel", "history", SERVICE, "prod"]))
            .unwrap();
    let versions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2.0", "1.0"]);
    assert_eq!(history[1]["signed_by"][0]["name"], "ops");
    let accepted = third_m.ok(&["channel", "verify", SERVICE, "prod", "--policy", policy]);
    assert!(accepted.contains("2.0"), "{accepted}");
    let reproduced = third_m.ok(&["verify", &v2]);
    assert!(reproduced.starts_with("reproduced:"), "{reproduced}");
    // The second store promoted on its own: copying over it is refused.
    let err = ops.fails(&["store", "copy", &channel, "--to", second.to_str().unwrap()]);
    assert!(err.contains("has diverged"), "{err}");

    // An input whose bytes the store lost is named, with how to provide it.
    // (The source as it was for 1.0 snapshots to the tree 1.0 recorded.)
    let original = std::fs::read(Path::new(EXAMPLE).join("src/greeting.txt")).unwrap();
    std::fs::write(project.join("src/greeting.txt"), original).unwrap();
    let src_tree = there.ok(&["store", "add", project.join("src").to_str().unwrap()]);
    let hex = src_tree.trim_start_matches("sha256:");
    std::fs::remove_file(second.join("blobs").join(&hex[..2]).join(hex)).unwrap();
    let err = there.fails(&["verify", &release]);
    assert!(err.contains("input `src`") && err.contains(hex), "{err}");
    assert!(
        err.contains("store copy") && err.contains("store add"),
        "{err}"
    );
}
