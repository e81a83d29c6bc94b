//! A real Bazel client (Debian's bazel-bootstrap) uses `cairn server` as its
//! HTTP remote cache: the second build, on a fresh output base, is served
//! from the cache.

mod support;

use std::path::Path;
use std::process::Command;

use support::cli::token;
use support::Server;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bazel-genrule");

fn bazel_build(workspace: &Path, output_root: &Path, cache: &str, token: &str) -> String {
    let out = Command::new("bazel")
        .arg(format!("--output_user_root={}", output_root.display()))
        .args(["build", "//:count", "--noshow_progress", "--color=no"])
        .arg(format!("--remote_cache={cache}"))
        .arg(format!("--remote_header=Authorization=Bearer {token}"))
        .current_dir(workspace)
        .output()
        .expect("this test needs Debian's bazel-bootstrap (`bazel` on PATH)");
    let _ = Command::new("bazel")
        .arg(format!("--output_user_root={}", output_root.display()))
        .arg("shutdown")
        .current_dir(workspace)
        .status();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "bazel build failed:\n{log}");
    log
}

#[test]
fn bazel_is_served_from_the_cairn_cache_on_a_clean_output_base() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let token = token(&store, "bazel", &["read", "write"]);
    let server = Server::start(&store, &[] as &[&str]);
    let url = &server.url;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let workspace = tmp.path().join("ws");
    copy_dir(Path::new(FIXTURE), &workspace);

    let first = bazel_build(&workspace, &tmp.path().join("root1"), url, &token);
    assert!(
        !first.contains("remote cache hit"),
        "the first build cannot hit:\n{first}"
    );
    let second = bazel_build(&workspace, &tmp.path().join("root2"), url, &token);
    assert!(
        second.contains("2 remote cache hit"),
        "second build not served from cache:\n{second}"
    );

    let out = std::fs::read_to_string(workspace.join("bazel-bin/count.txt")).unwrap();
    assert_eq!(out.trim(), "44", "the cached output has the wrong content");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
