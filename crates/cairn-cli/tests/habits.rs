//! Everyday command-line habits, through the real binary: closed pipes,
//! `--json` errors, colours only on terminals, feedback with `-v`, and the
//! messages for the common first mistakes.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

fn cairn(store: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(CAIRN);
    cmd.env_remove("CAIRN_STORE")
        .env_remove("CAIRN_TOKEN")
        .env_remove("RUST_LOG")
        .arg("--store")
        .arg(store)
        .args(args);
    cmd
}

fn run(store: &Path, args: &[&str]) -> Output {
    cairn(store, args).output().unwrap()
}

fn ok(store: &Path, args: &[&str]) -> String {
    let out = run(store, args);
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A tree whose listing is far larger than a pipe's buffer.
fn many_files(root: &Path) -> String {
    let dir = root.join("many");
    for i in 0..3000 {
        let sub = dir.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("file-{i:05}.txt")), i.to_string()).unwrap();
    }
    dir.to_str().unwrap().to_string()
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let tree = ok(&store, &["store", "add", &many_files(tmp.path())]);
    // `cairn store ls -r … | head -2`
    let mut child = cairn(&store, &["store", "ls", "-r", &tree])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().starts_with("dir"));
    assert!(lines.next().is_some());
    drop(lines);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(err.is_empty(), "not quiet: {err}");
}

#[test]
fn json_errors_are_json_and_pipes_get_no_colours() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    ok(&store, &["store", "add", file.to_str().unwrap()]);
    let absent = format!("sha256:{}", "ab".repeat(32));
    let out = run(&store, &["--json", "store", "cat", &absent]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("is not in the store"),
        "{err}"
    );
    assert_eq!(err["exit_code"], 1);
    assert_eq!(err["details"], serde_json::json!([]));

    // A usage error is JSON too, with clap's exit status.
    let out = run(&store, &["--json", "store", "ls"]);
    assert_eq!(out.status.code(), Some(2));
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(err["error"].as_str().unwrap().contains("<DIGEST>"), "{err}");
    assert_eq!(err["exit_code"], 2);
    // Without --json it stays text.
    let out = run(&store, &["store", "ls"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error:"));

    // -vv logs into a pipe: no ANSI escape codes.
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), "a").unwrap();
    let out = run(&store, &["-vv", "store", "add", src.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(!out.stderr.is_empty(), "-vv logged nothing");
    assert!(
        !out.stderr.contains(&0x1b),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn verbose_says_what_is_uploaded_and_fetched() {
    let tmp = tempfile::tempdir().unwrap();
    let server_store = tmp.path().join("server-store");
    let token = support::cli::token(&server_store, "t", &["read", "write"]);
    let server = support::Server::start::<&str>(&server_store, &[]);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), "a").unwrap();
    let remote = |cache: &str, args: &[&str]| {
        Command::new(CAIRN)
            .env_remove("CAIRN_STORE")
            .env_remove("RUST_LOG")
            .env("CAIRN_CACHE", tmp.path().join(cache))
            .env("CAIRN_TOKEN", &token)
            .args(["-v", "--store", &server.url])
            .args(args)
            .output()
            .unwrap()
    };
    let out = remote("cache-a", &["store", "add", src.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("uploading sha256:") && err.contains(&server.url),
        "{err}"
    );
    assert!(err.contains("2 of 2 blobs"), "{err}");
    let tree = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = remote("cache-b", &["store", "ls", &tree]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("fetching {tree}")), "{err}");
}

#[test]
fn common_mistakes_get_messages_that_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();

    let out = cairn(&store, &["build"])
        .current_dir(&empty)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("no cairn.toml in {}", empty.display())),
        "{err}"
    );
    assert!(err.contains("-C DIR"), "{err}");

    let keys = tmp.path().join("keys");
    let with_keys = |args: &[&str]| {
        let mut all = vec!["--keys", keys.to_str().unwrap()];
        all.extend_from_slice(args);
        run(&store, &all)
    };
    assert!(with_keys(&["key", "generate", "release-bot"])
        .status
        .success());
    let out = with_keys(&["release", "--key", "relase-bot"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("did you mean \"release-bot\""), "{err}");

    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, "not a directory").unwrap();
    let blob = ok(&store, &["store", "add", file.to_str().unwrap()]);
    let out = run(&store, &["store", "ls", &blob]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is a file, not a tree"), "{err}");
    assert!(err.contains("cairn store cat"), "{err}");
}
