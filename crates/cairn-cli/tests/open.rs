//! Opening the store, as a user meets it: a read-only command never
//! creates a store, an almost-URL is refused with the forms accepted, and a
//! wrong credential, bucket, token or scheme fails at once, exit 1, in one
//! line naming the store (never S3's XML).
//!
//! Needs `moto_server` on PATH (`pip install 'moto[server]'`).

mod support;

use std::path::Path;
use std::process::{Command, Output};

use cairn_store::moto::{free_port, Moto};
use support::refused;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// `cairn ARGS` in `dir`, with nothing from the test's environment that
/// would choose a store, a token or S3 credentials.
fn cairn(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(CAIRN);
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") || name.starts_with("CAIRN_") {
            cmd.env_remove(name);
        }
    }
    cmd.current_dir(dir)
        .env("CAIRN_CACHE", dir.join(".cache"))
        .env("XDG_DATA_HOME", dir.join(".data"))
        .args(args)
        .output()
        .unwrap()
}

const ABSENT: &str = "sha256:3b0f9aa8d7b6cc7bd8c8f8c0e4b1b9c39bb1a3b1a2b1e2e4e1d5c9a8b7c6d5e4/10";

/// Every command that only reads, or needs what a store already holds.
fn read_only_commands() -> Vec<Vec<&'static str>> {
    vec![
        vec!["ref", "list"],
        vec!["ref", "get", "a/b"],
        vec!["store", "ls", ABSENT],
        vec!["store", "cat", ABSENT],
        vec!["store", "checkout", ABSENT, "out"],
        vec!["store", "verify"],
        vec!["store", "gc", "--dry-run"],
        vec!["store", "copy", ABSENT, "--to", "elsewhere"],
        vec!["channel", "show", "svc", "prod"],
        vec!["channel", "history", "svc", "prod"],
        vec!["release", "show", ABSENT],
        vec!["promote", ABSENT, "--channel", "prod", "--key", "k"],
        vec!["verify", ABSENT],
    ]
}

#[test]
fn read_only_commands_never_create_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let absent = dir.join("absent");
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    for store in [&absent, &empty] {
        for command in read_only_commands() {
            let args = [&["--store", store.to_str().unwrap()], &command[..]].concat();
            let out = cairn(dir, &args);
            refused(&out, 1, &format!("no store at {}", store.display()));
        }
    }
    assert!(!absent.exists(), "a read-only command created the store");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    assert!(
        !dir.join("elsewhere").exists(),
        "a failed copy made its destination"
    );

    // The default store is no different.
    let default = dir.join(".data/cairn/store");
    refused(
        &cairn(dir, &["ref", "list"]),
        1,
        &default.display().to_string(),
    );
    assert!(!default.exists());

    // A command that writes creates it, and then reading works.
    std::fs::write(dir.join("file"), "x").unwrap();
    let store = absent.to_str().unwrap();
    let added = cairn(dir, &["--store", store, "store", "add", "file"]);
    assert!(added.status.success(), "{added:?}");
    let listed = cairn(dir, &["--store", store, "ref", "list"]);
    assert!(listed.status.success(), "{listed:?}");
}

#[test]
fn almost_urls_are_refused_with_the_forms_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("file"), "x").unwrap();
    for url in [
        "s3:/bucket",
        "s3:bucket",
        "http:/127.0.0.1:1",
        "https:host",
        "s3//bucket",
        "foo:/bar",
    ] {
        for command in [&["store", "add", "file"][..], &["ref", "list"]] {
            let args = [&["--store", url][..], command].concat();
            let err = refused(&cairn(dir, &args), 1, "s3://bucket/prefix");
            assert!(err.contains(url), "{err}");
        }
    }
    let mut made: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    made.sort();
    assert_eq!(made, ["file"], "an almost-URL was taken for a directory");
}

/// Credentials written into a store URL are refused by every command,
/// exit 1, and never shown: not on stdout, not in the error, not in the
/// logs of `-vv`, whether the URL is `--store`, `CAIRN_STORE` or a copy's
/// destination, and whether they are the URL's own or its S3 endpoint's.
#[test]
fn store_urls_with_credentials_are_refused_without_showing_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("file"), "x").unwrap();
    let local = dir.join("local");
    let local = local.to_str().unwrap();
    let added = cairn(dir, &["--store", local, "store", "add", "file"]);
    assert!(added.status.success(), "{added:?}");
    let digest = String::from_utf8(added.stdout).unwrap();
    let digest = digest.split_whitespace().next().unwrap().to_owned();
    let check = |out: &Output, url: &str| {
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            !stdout.contains("s3cret") && !stderr.contains("s3cret"),
            "{url}: {stdout} {stderr}"
        );
        let err = refused(out, 1, "carries credentials (user:password@)");
        assert!(err.contains("***@"), "{url}: {err}");
    };
    for url in [
        "https://alice:s3cret@127.0.0.1:1/x",
        "http://s3cret@127.0.0.1:1",
        "s3://AKIAEXAMPLE:s3cret@bucket/prefix",
        "s3://bucket/prefix?endpoint=http://alice:s3cret@127.0.0.1:1",
    ] {
        for command in [
            &["ref", "list"][..],
            &["-vv", "store", "add", "file"],
            &["--json", "ref", "get", "a/b"],
        ] {
            let args = [&["--store", url][..], command].concat();
            check(&cairn(dir, &args), url);
        }
        let copy = [
            "--store", local, "-vv", "store", "copy", &digest, "--to", url,
        ];
        check(&cairn(dir, &copy), url);
        let mut from_env = Command::new(CAIRN);
        from_env
            .current_dir(dir)
            .env("CAIRN_STORE", url)
            .env("CAIRN_CACHE", dir.join(".cache"))
            .args(["ref", "list"]);
        check(&from_env.output().unwrap(), url);
    }
}

#[test]
fn missing_s3_credentials_are_said_plainly() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("s3://bucket?endpoint=http://127.0.0.1:{}", free_port());
    let silent = format!("http://127.0.0.1:{}", free_port());
    let mut cmd = Command::new(CAIRN);
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") || name.starts_with("CAIRN_") {
            cmd.env_remove(name);
        }
    }
    // The metadata service, asked when nothing is configured, is kept on
    // loopback (and silent) here.
    let out = cmd
        .env("AWS_METADATA_ENDPOINT", &silent)
        .env("CAIRN_CACHE", tmp.path())
        .args(["--store", &url, "ref", "list"])
        .output()
        .unwrap();
    let err = refused(
        &out,
        1,
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    );
    assert!(err.contains(&url), "{err}");
}

#[test]
fn wrong_s3_keys_are_refused_without_xml() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = Moto::start_refusing_credentials("bucket");
    let url = moto.url("bucket", "p");
    let mut cmd = Command::new(CAIRN);
    let out = cmd
        .env_remove("CAIRN_STORE")
        .env("AWS_ACCESS_KEY_ID", "wrong")
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .env("CAIRN_CACHE", tmp.path())
        .args(["--store", &url, "ref", "list"])
        .output()
        .unwrap();
    let err = refused(&out, 1, "access denied");
    assert!(
        err.contains("InvalidAccessKeyId") && err.contains(&url),
        "{err}"
    );
    assert!(!err.contains('<'), "S3's XML in the message: {err}");
}

#[test]
fn a_server_is_checked_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = dir.join("served");
    let server = support::Server::start(&store, &["--anonymous-read"]);
    let url = server.url.clone();
    let private_store = dir.join("private");
    let args = [
        "--store",
        private_store.to_str().unwrap(),
        "server",
        "token",
        "create",
        "t",
        "--scope",
        "read",
    ];
    assert!(cairn(dir, &args).status.success());
    let plain = support::Server::start(&private_store, &[] as &[&str]);

    // https:// against a plain HTTP server says what to do.
    let tls = url.replacen("http://", "https://", 1);
    let err = refused(
        &cairn(dir, &["--store", &tls, "ref", "list"]),
        1,
        "does not speak TLS",
    );
    assert!(err.contains("use http://"), "{err}");

    // No token, or a wrong one, where reading needs one: 401, named.
    let private = &plain.url;
    let err = refused(&cairn(dir, &["--store", private, "ref", "list"]), 1, "401");
    assert!(
        err.contains(private) && err.contains("without a token"),
        "{err}"
    );
    let wrong = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong.path(), "wrong").unwrap();
    let wrong = wrong.path().to_str().unwrap().to_owned();
    let args = ["--store", private, "--token-file", &wrong, "ref", "list"];
    refused(&cairn(dir, &args), 1, "unknown token");

    // Not a cairn server's address, or nothing there.
    let args = ["--store", &format!("{url}/sub"), "ref", "list"];
    refused(
        &cairn(dir, &args),
        1,
        "is this the address of a `cairn server`?",
    );
    let nobody = format!("http://127.0.0.1:{}", free_port());
    refused(
        &cairn(dir, &["--store", &nobody, "ref", "list"]),
        1,
        "cannot connect",
    );

    // The same checks guard a copy's destination, before anything moves.
    std::fs::write(dir.join("file"), "x").unwrap();
    let local = dir.join("local");
    let add = cairn(
        dir,
        &["--store", local.to_str().unwrap(), "store", "add", "file"],
    );
    assert!(add.status.success());
    let digest = String::from_utf8(add.stdout).unwrap().trim().to_string();
    let args = [
        "--store",
        local.to_str().unwrap(),
        "store",
        "copy",
        &digest,
        "--to",
        private,
    ];
    refused(&cairn(dir, &args), 1, "opening the destination");
}
