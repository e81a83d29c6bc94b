//! `cairn server` as a user runs it: the real binary on 127.0.0.1:0, a
//! token made with `cairn server token create`, and other `cairn`
//! commands using it through `--store http://…`.

mod support;

use std::process::Command;

use support::Server;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

fn cairn(args: &[&str]) -> std::process::Output {
    Command::new(CAIRN)
        .args(args)
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_TOKEN")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = cairn(args);
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn refs_through_a_running_server_with_a_token_made_while_it_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let store_arg = store.to_str().unwrap();
    let mut server = Server::start::<&str>(&store, &[]);
    let url = server.url.clone();

    let out = cairn(&["--store", &url, "ref", "set", "app/x", "1", "--create"]);
    support::refused(&out, 1, "cairn server token create");

    let token = ok(&[
        "--store", store_arg, "server", "token", "create", "ops", "--scope", "admin",
    ]);
    assert!(token.starts_with("cairn_"), "{token}");
    let text = std::fs::read_to_string(store.join("tokens.toml")).unwrap();
    assert!(
        !text.contains(&token),
        "the token itself must not be stored"
    );

    // A token on the command line is refused (everyone sees it in ps),
    // before anything is sent; an empty token file too.
    let shown = cairn(&["--store", &url, "--token", &token, "ref", "get", "app/x"]);
    assert_eq!(shown.status.code(), Some(1));
    let err = String::from_utf8_lossy(&shown.stderr);
    assert!(
        err.contains("--token-file") && err.contains("CAIRN_TOKEN"),
        "{err}"
    );
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "\n").unwrap();
    let token_file = token_file.to_str().unwrap();
    let empty = cairn(&[
        "--store",
        &url,
        "--token-file",
        token_file,
        "ref",
        "get",
        "app/x",
    ]);
    assert_eq!(empty.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("is empty"));
    std::fs::write(token_file, format!("{token}\n")).unwrap();

    let with_token = ["--store", &url, "--token-file", token_file];
    ok(&[
        &with_token[..],
        &["ref", "set", "app/x", "hello", "--create"],
    ]
    .concat());
    assert_eq!(
        ok(&[&with_token[..], &["ref", "get", "app/x"]].concat()),
        "hello"
    );
    assert_eq!(ok(&["--store", store_arg, "ref", "get", "app/x"]), "hello");

    // SIGTERM: a graceful exit with status 0.
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn tokens_are_listed_and_a_revoked_token_is_refused_by_the_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let store_arg = store.to_str().unwrap();
    let create = |name: &str, scope: &str| {
        ok(&[
            "--store", store_arg, "server", "token", "create", name, "--scope", scope,
        ])
    };
    let ci = create("ci", "read");
    let ops = create("ops", "admin");
    let server = Server::start::<&str>(&store, &[]);

    let listed: serde_json::Value = serde_json::from_str(&ok(&[
        "--json", "--store", store_arg, "server", "token", "list",
    ]))
    .unwrap();
    assert_eq!(listed[0]["name"], "ci");
    assert_eq!(listed[0]["scopes"], serde_json::json!(["read"]));
    assert_eq!(listed[1]["name"], "ops");
    let table = ok(&["--store", store_arg, "server", "token", "list"]);
    assert!(!table.contains(&ci) && !table.contains(&ops), "{table}");

    let read = |token: &str| {
        Command::new(CAIRN)
            .args(["--store", &server.url, "ref", "list"])
            .env_remove("CAIRN_STORE")
            .env("CAIRN_TOKEN", token)
            .output()
            .unwrap()
    };
    assert!(read(&ci).status.success());
    ok(&["--store", store_arg, "server", "token", "revoke", "ci"]);
    // The same running server: the next request with the token is refused.
    let refused = read(&ci);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("401") && err.contains("unknown token"),
        "{err}"
    );
    assert!(read(&ops).status.success(), "the other token still works");

    let again = cairn(&["--store", store_arg, "server", "token", "revoke", "ci"]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        err.contains("no token named \"ci\"") && err.contains("ops"),
        "{err}"
    );
}

#[test]
fn a_registry_password_on_the_command_line_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let layout = tmp.path().join("layout");
    let digest = format!("sha256:{}", "0".repeat(64));
    let shown = cairn(&[
        "--store",
        store.to_str().unwrap(),
        "image",
        "build",
        &digest,
        "--output",
        layout.to_str().unwrap(),
        "--registry-password",
        "hunter2",
    ]);
    let line = support::refused(&shown, 1, "--registry-password-file");
    assert!(line.contains("CAIRN_REGISTRY_PASSWORD"), "{line}");
    assert!(!line.contains("hunter2"), "{line}");
    assert!(!store.exists() && !layout.exists());
    // An empty password file is refused too.
    let file = tmp.path().join("password");
    std::fs::write(&file, "").unwrap();
    let empty = cairn(&[
        "--store",
        store.to_str().unwrap(),
        "image",
        "build",
        &digest,
        "--registry-password-file",
        file.to_str().unwrap(),
    ]);
    support::refused(&empty, 1, "is empty");
}
