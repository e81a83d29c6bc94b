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

    let with_token = ["--store", &url, "--token", &token];
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
