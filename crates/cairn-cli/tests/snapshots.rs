//! The command line's output is part of its contract: every `--help`
//! text, the tables, and the messages for common mistakes are kept as
//! insta snapshots (`tests/snapshots/`), so a change to any of them shows
//! in review. Accept an intended change with `cargo insta review` (or
//! `INSTA_UPDATE=always cargo test -p cairn-cli --test snapshots`).
//!
//! Values that differ per run (temporary paths, key ids, dates) are
//! replaced by placeholders; digests of fixed content are kept.

use std::path::Path;
use std::process::{Command, Output};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

fn cairn(dir: &Path, args: &[&str]) -> Output {
    Command::new(CAIRN)
        .args(args)
        .current_dir(dir)
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_TOKEN")
        .env_remove("CAIRN_KEYS")
        .env_remove("CAIRN_CACHE")
        .env_remove("CAIRN_CA_CERT")
        .env_remove("CAIRN_REGISTRY_USER")
        .env_remove("CAIRN_REGISTRY_PASSWORD")
        .env_remove("RUST_LOG")
        .env_remove("COLUMNS")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The subcommands a `--help` text lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // Continuation lines of a wrapped description are indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_help_text() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pending = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = stdout(&cairn(tmp.path(), &args));
        for sub in subcommands(&help) {
            let mut child = path.clone();
            child.push(sub);
            pending.push(child);
        }
        let name = if path.is_empty() {
            "cairn".to_string()
        } else {
            format!("cairn-{}", path.join("-"))
        };
        insta::assert_snapshot!(name, help);
        seen += 1;
    }
    // The walk found the whole tree, not just the top.
    assert!(seen > 30, "only {seen} commands found");
}

/// A store and keys in `root` holding fixed content.
fn filled(root: &Path) -> (String, String) {
    let store = root.join("store").to_str().unwrap().to_string();
    let keys = root.join("keys").to_str().unwrap().to_string();
    let src = root.join("src");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    std::fs::write(src.join("README"), "read me\n").unwrap();
    std::fs::write(src.join("docs/guide.txt"), "a guide\n").unwrap();
    std::os::unix::fs::symlink("docs/guide.txt", src.join("guide")).unwrap();
    (store, keys)
}

#[test]
fn the_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (store, keys) = filled(root);
    let run = |args: &[&str]| {
        let mut all = vec!["--store", &store, "--keys", &keys];
        all.extend_from_slice(args);
        stdout(&cairn(root, &all))
    };
    let tree = run(&["store", "add", "src"]);
    insta::assert_snapshot!("store-ls", run(&["store", "ls", "-r", tree.trim()]));
    run(&["key", "generate", "ci"]);
    run(&["key", "generate", "release-bot"]);
    // A key whose private half lives elsewhere, imported from its export.
    let other = root.join("other-keys");
    let elsewhere = |args: &[&str]| {
        let mut all = vec!["--keys", other.to_str().unwrap()];
        all.extend_from_slice(args);
        stdout(&cairn(root, &all))
    };
    elsewhere(&["key", "generate", "auditor"]);
    let exported = elsewhere(&["key", "export", "auditor"]);
    run(&["key", "import", exported.trim()]);
    run(&[
        "policy",
        "add",
        "trust.toml",
        "web",
        "prod",
        "--key",
        "ci",
        "--key",
        "release-bot",
        "--threshold",
        "2",
    ]);
    run(&[
        "policy",
        "add",
        "trust.toml",
        "web",
        "staging",
        "--key",
        "ci",
    ]);
    run(&[
        "server", "token", "create", "ci", "--scope", "read", "--scope", "write",
    ]);
    run(&[
        "server",
        "token",
        "create",
        "deploy",
        "--scope",
        "promote:web",
    ]);
    insta::with_settings!({filters => vec![
        (r"ed25519:[0-9a-f]{32}", "ed25519:[KEY_ID]"),
        (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
    ]}, {
        insta::assert_snapshot!("key-list", run(&["key", "list"]));
        insta::assert_snapshot!("policy-show", run(&["policy", "show", "trust.toml"]));
        insta::assert_snapshot!(
            "policy-file",
            std::fs::read_to_string(root.join("trust.toml")).unwrap()
        );
        insta::assert_snapshot!("token-list", run(&["server", "token", "list"]));
    });
}

#[test]
fn the_error_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (store, keys) = filled(root);
    let fail = |args: &[&str]| {
        let mut all = vec!["--store", &store, "--keys", &keys];
        all.extend_from_slice(args);
        let out = cairn(root, &all);
        assert!(!out.status.success(), "cairn {args:?} succeeded");
        format!(
            "exit {}\n{}",
            out.status.code().unwrap(),
            String::from_utf8(out.stderr).unwrap()
        )
    };
    let ok = |args: &[&str]| {
        let mut all = vec!["--store", &store, "--keys", &keys];
        all.extend_from_slice(args);
        stdout(&cairn(root, &all)).trim().to_string()
    };
    ok(&["key", "generate", "release-bot"]);
    ok(&["key", "generate", "ops"]);
    let file = ok(&["store", "add", "src/README"]);
    let absent = format!("sha256:{}", "ab".repeat(32));
    insta::with_settings!({filters => vec![
        (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
    ]}, {
        insta::assert_snapshot!("no-recipe", fail(&["build"]));
        insta::assert_snapshot!("no-recipe-file", fail(&["build", "--file", "nope.toml"]));
        insta::assert_snapshot!("unknown-key-close", fail(&["release", "--key", "relase-bot"]));
        insta::assert_snapshot!("unknown-key-far", fail(&["release", "--key", "production"]));
        insta::assert_snapshot!("ls-a-file", fail(&["store", "ls", &file]));
        insta::assert_snapshot!("not-a-digest", fail(&["store", "cat", "latest"]));
        insta::assert_snapshot!("not-in-store", fail(&["store", "cat", &absent]));
        insta::assert_snapshot!("json-error", fail(&["--json", "store", "cat", &absent]));
        insta::assert_snapshot!("json-usage-error", fail(&["--json", "store", "ls"]));
        insta::assert_snapshot!("usage-error", fail(&["store", "ls"]));
        let unreleased = format!("releases/web/{}", "ab".repeat(32));
        insta::assert_snapshot!("image-release-absent", fail(&["image", "build", &unreleased]));
        insta::assert_snapshot!("image-json-error", fail(&["--json", "image", "build", "latest"]));
        insta::assert_snapshot!("revoke-unknown-token", fail(&["server", "token", "revoke", "nobody"]));
        insta::assert_snapshot!(
            "policy-threshold",
            fail(&["policy", "add", "p.toml", "web", "prod", "--key", "ops", "--threshold", "2"])
        );
    });
}
