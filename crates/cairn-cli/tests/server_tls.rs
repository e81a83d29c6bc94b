//! `cairn server --tls-cert --tls-key`: the real binary serving HTTPS on
//! 127.0.0.1:0 with a self-signed certificate, and `cairn --store
//! https://…` trusting it only when told to (`CAIRN_CA_CERT`).

mod support;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use support::Server;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

fn cairn(args: &[&str], ca: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(CAIRN);
    cmd.args(args)
        .env_remove("CAIRN_STORE")
        .env_remove("CAIRN_TOKEN")
        .env_remove("CAIRN_CA_CERT");
    if let Some(ca) = ca {
        cmd.env("CAIRN_CA_CERT", ca);
    }
    cmd.output().unwrap()
}

fn ok(args: &[&str], ca: Option<&Path>) -> String {
    let out = cairn(args, ca);
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn https_with_a_self_signed_certificate_trusted_through_cairn_ca_cert() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let store_arg = store.to_str().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = tmp.path().join("cert.pem");
    let key = tmp.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();

    let token = ok(
        &[
            "--store", store_arg, "server", "token", "create", "ops", "--scope", "admin",
        ],
        None,
    );

    let server = Server::start(
        &store,
        &[
            OsStr::new("--tls-cert"),
            cert.as_os_str(),
            OsStr::new("--tls-key"),
            key.as_os_str(),
        ],
    );
    let url = server.url.clone();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let with_token = [
        "--store",
        &url,
        "--token-file",
        token_file.to_str().unwrap(),
    ];
    let set = [
        &with_token[..],
        &["ref", "set", "app/x", "hello", "--create"],
    ]
    .concat();
    let get = [&with_token[..], &["ref", "get", "app/x"]].concat();

    // Without the CA: refused, with a one-line reason naming the
    // certificate problem and the way out.
    let err = support::refused(&cairn(&set, None), 1, "certificate");
    assert!(err.contains("CAIRN_CA_CERT"), "{err}");

    // With it: refs through HTTPS, visible in the local store.
    ok(&set, Some(&cert));
    assert_eq!(ok(&get, Some(&cert)), "hello");
    assert_eq!(
        ok(&["--store", store_arg, "ref", "get", "app/x"], None),
        "hello"
    );

    // A CA file that is not there is named.
    let missing = tmp.path().join("nope.pem");
    let err = support::refused(&cairn(&get, Some(&missing)), 1, "CAIRN_CA_CERT");
    assert!(err.contains("nope.pem"), "{err}");
    drop(server);
}

#[test]
fn a_missing_or_mismatched_certificate_is_refused_before_listening() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = tmp.path().join("cert.pem");
    let key = tmp.path().join("other-key.pem");
    std::fs::write(&cert, a.cert.pem()).unwrap();
    std::fs::write(&key, b.key_pair.serialize_pem()).unwrap();
    let run = |cert: &Path, key: &Path| {
        let out = Command::new(CAIRN)
            .args(["server", "--listen", "127.0.0.1:0", "--store"])
            .arg(&store)
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env_remove("CAIRN_STORE")
            .output()
            .unwrap();
        out
    };
    // Refused before anything is printed on stdout (where the address goes).
    support::refused(
        &run(&tmp.path().join("missing.pem"), &key),
        1,
        "missing.pem",
    );
    support::refused(&run(&cert, &key), 1, "do not fit together");
}
