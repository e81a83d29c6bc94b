//! A real Bazel client (Debian's bazel-bootstrap) uses `cairn server` as its
//! HTTP remote cache: the second build, on a fresh output base, is served
//! from the cache.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bazel-genrule");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cairn server` on 127.0.0.1:0 and returns it with its address.
fn start_server(store: &Path) -> (Server, String) {
    let mut child = Command::new(CAIRN)
        .args(["server", "--listen", "127.0.0.1:0", "--store"])
        .arg(store)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first.trim().trim_start_matches("listening on ").to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "unexpected first line {first:?}"
    );
    (Server(child), url)
}

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
    let token = create_token(&store);
    let (_server, url) = start_server(&store);
    let workspace = tmp.path().join("ws");
    copy_dir(Path::new(FIXTURE), &workspace);

    let first = bazel_build(&workspace, &tmp.path().join("root1"), &url, &token);
    assert!(
        !first.contains("remote cache hit"),
        "the first build cannot hit:\n{first}"
    );
    let second = bazel_build(&workspace, &tmp.path().join("root2"), &url, &token);
    assert!(
        second.contains("2 remote cache hit"),
        "second build not served from cache:\n{second}"
    );

    let out = std::fs::read_to_string(workspace.join("bazel-bin/count.txt")).unwrap();
    assert_eq!(out.trim(), "44", "the cached output has the wrong content");
}

fn create_token(store: &Path) -> String {
    let out = Command::new(CAIRN)
        .args([
            "server", "token", "create", "bazel", "--scope", "read", "--scope", "write", "--store",
        ])
        .arg(store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
