//! What anyone who may write the store (no signing key needed), a remote
//! server or a service puts in front of an operator: the real `cairn`
//! against a real store holding hostile text (an OSC 52 clipboard write,
//! a CSI screen clear, a carriage return, a newline faking a line, a C1
//! CSI, bytes that are not UTF-8). No raw control character reaches
//! stdout or stderr, the text is shown escaped, and `--json` keeps it as
//! it was written.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use support::cli::Machine;

/// What a store writer puts in a text: a clipboard write, a screen clear,
/// a carriage return rewriting the line, a fake line, a C1 CSI.
const HOSTILE: &str = "x\u{1b}]52;c;cm0gLXJmIH4K\u{7}\u{1b}[2J\rok\nFAKE LINE\u{9b}1m";
/// How [`HOSTILE`] looks as a name (`cairn_escape::name`) and as text.
const SHOWN: &str = "x\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b[2J\\rok\\nFAKE LINE\\u{9b}1m";

const SERVICE: &str = "web";
const SET: &str = "eu";
const TARGET: &str = "sha256:dc38aee2c6681f7a65547365a5318c4a36cfa64d5a9edd69e4f7a01e5d1c96b0";

fn machine(root: &Path) -> Machine {
    Machine::under(root, &root.join("work"))
}

fn assert_safe(out: &Output) {
    support::assert_terminal_safe(out);
}

/// `cairn ref set NAME VALUE --create`, as any store writer may.
fn write_ref(m: &Machine, name: &str, value: &Value) {
    let value = value.to_string();
    let out = m.run(&["ref", "set", name, &value, "--create", "--allow-dangling"]);
    assert!(
        out.status.success(),
        "ref set {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn digest() -> Value {
    json!({"hash": TARGET, "size": 602})
}

/// A member record (`cairn_rollout::MemberRecord`) and a halted rollout
/// record (`cairn_rollout::RolloutRecord`) whose every text field is
/// hostile, written where the agents write them.
fn write_hostile_fleet(m: &Machine) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let member = json!({
        "agent": HOSTILE, "release": digest(), "version": HOSTILE, "sequence": 2,
        "generation": 1, "state": "failed", "health": "unhealthy", "heartbeat": now,
        "last_error": HOSTILE,
    });
    write_ref(m, &format!("fleet/{SERVICE}/{SET}/members/m1"), &member);
    let rollout = json!({
        "target": digest(), "sequence": 2, "version": HOSTILE, "strategy": {},
        "phase": "halted", "wave": 1, "capacity": 1, "lease": 60,
        "slots": [{"member": HOSTILE, "expires": now + 30}],
        "gates": [HOSTILE],
        "failures": [{"member": HOSTILE, "reason": HOSTILE, "at": now}],
        "halted": {"member": HOSTILE, "reason": HOSTILE, "at": now, "phase": "rolling"},
        "created": now - 100, "updated": now - 10,
    });
    write_ref(m, &format!("fleet/{SERVICE}/{SET}/rollout"), &rollout);
}

#[test]
fn status_shows_every_record_text_escaped_and_json_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let m = machine(tmp.path());
    write_hostile_fleet(&m);

    let out = m.run(&["status", SERVICE]);
    assert_safe(&out);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "a halted rollout: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No line of the output starts with the fake one.
    assert!(!text.lines().any(|l| l.starts_with("FAKE LINE")), "{text}");
    for (label, why) in [
        ("halted", "the halt's reason"),
        ("waits on", "the gates' words"),
        ("slot", "a slot's member"),
        ("failed", "a failed member"),
        ("target", "the rollout's version"),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{label:<10} ")))
            .unwrap_or_else(|| panic!("no {label} line: {text}"));
        assert!(line.contains(SHOWN), "{why} shown escaped: {line}");
    }
    // The member table: version and last error (the id is the ref's).
    let row = text
        .lines()
        .find(|l| l.starts_with(&format!("{SET}   ")) || l.starts_with(&format!("{SET} ")))
        .unwrap_or_else(|| panic!("no member row: {text}"));
    assert_eq!(row.matches(SHOWN).count(), 2, "version and error: {row}");

    let out = m.run(&["status", SERVICE, "--json"]);
    assert_safe(&out);
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let story = &report["rollouts"][0];
    assert_eq!(story["halted"], HOSTILE, "--json keeps the raw text");
    assert_eq!(story["gates"][0], HOSTILE);
    assert_eq!(story["slots"][0]["member"], HOSTILE);
    assert_eq!(report["members"][0]["record"]["last_error"], HOSTILE);
}

#[test]
fn an_unreadable_member_record_s_error_is_shown_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let m = machine(tmp.path());
    // Not a member record: the parse error quotes the state it found.
    let value = json!({"agent": "m1", "state": HOSTILE, "health": "healthy", "heartbeat": 1});
    write_ref(&m, &format!("fleet/{SERVICE}/{SET}/members/m1"), &value);
    let out = m.run(&["status", SERVICE]);
    assert_safe(&out);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "a header and one row: {text}");
    let row = text.lines().nth(1).unwrap();
    assert!(row.starts_with(SET) && row.contains(SHOWN), "{text}");
}

#[test]
fn ref_get_shows_a_hostile_value_escaped_with_its_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let m = machine(tmp.path());
    let name = "notes/hostile";
    let out = m.run(&["ref", "set", name, "PLACEHOLDER", "--create"]);
    assert!(out.status.success());
    // A store writer with the directory writes any bytes: the file is the
    // version line, then the value.
    let file = tmp.path().join("store/refs").join(name);
    let stored = std::fs::read(&file).unwrap();
    let version_line = &stored[..=stored.iter().position(|&b| b == b'\n').unwrap()];
    let mut bytes = version_line.to_vec();
    bytes.extend_from_slice(HOSTILE.as_bytes());
    bytes.extend_from_slice(b"\nbad \xff\xfe end");
    std::fs::write(&file, bytes).unwrap();

    let out = m.run(&["ref", "get", name]);
    assert_safe(&out);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    // The value's own newlines are kept (a ref may hold lines), its
    // control characters and bad bytes made visible.
    assert_eq!(
        text,
        "x\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b[2J\\rok\nFAKE LINE\\u{9b}1m\nbad \\xff\\xfe end\n"
    );
    let out = m.run(&["ref", "get", name, "--json"]);
    assert_safe(&out);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["value"].as_str().unwrap().starts_with(HOSTILE));
}

/// A server answering every request with a 500 whose JSON error is
/// hostile; serves `count` requests.
fn hostile_server(count: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut s) = stream else { continue };
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut head = [0u8; 4096];
            let _ = s.read(&mut head);
            let body = json!({ "error": HOSTILE }).to_string();
            let _ = write!(
                s,
                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn a_server_s_error_message_is_shown_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let url = hostile_server(8);
    let m = machine(tmp.path()).with(&url, None);
    let out = m.run(&["ref", "list", "channels/"]);
    assert_safe(&out);
    let line = support::refused(&out, 1, "500");
    assert!(
        line.contains("x\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b[2J\\rok"),
        "the server's message shown escaped: {line}"
    );
    // As JSON the message is the server's, every control a JSON escape.
    let out = m.run(&["ref", "list", "channels/", "--json"]);
    assert_safe(&out);
    let line = support::refused(&out, 1, "500");
    assert!(line.contains("x\u{1b}]52;c;"), "{line}");
    assert!(line.contains("LINE\u{9b}1m"), "{line}");
}

#[test]
fn a_service_s_log_is_shown_escaped_and_kept_raw() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let logs = state.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // The pump the agent starts for each service process, fed what a
    // service logs of its clients' requests.
    let mut pump = Command::new(support::cli::CAIRN)
        .args(["log-pump", "--service", SERVICE, "--tag", "gen1[7]"])
        .args(["--max-bytes", "1000000", "--keep", "2", "--dir"])
        .arg(&logs)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut logged = format!("GET /{HOSTILE}\n").into_bytes();
    logged.extend_from_slice(b"bad \xff\xfe end\n");
    pump.stdin.take().unwrap().write_all(&logged).unwrap();
    assert!(pump.wait().unwrap().success());
    let raw = std::fs::read(logs.join(format!("{SERVICE}.log"))).unwrap();
    // The pump tags each line: the text up to the newline is kept raw.
    let first = HOSTILE.split('\n').next().unwrap().as_bytes();
    assert!(
        raw.windows(first.len()).any(|w| w == first),
        "the log file keeps the raw bytes: {}",
        String::from_utf8_lossy(&raw)
    );

    let out = Command::new(support::cli::CAIRN)
        .args(["logs", SERVICE, "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_safe(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("GET /x\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b[2J\\rok"),
        "{text}"
    );
    assert!(text.contains("bad \\xff\\xfe end"), "{text}");
}

#[test]
fn a_log_event_naming_a_path_with_a_newline_stays_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let m = machine(tmp.path());
    let file = tmp.path().join("greeting");
    std::fs::write(&file, "hello\n").unwrap();
    let out = m.run(&["store", "add", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // A destination whose name holds a carriage return and a fake line.
    let to = tmp.path().join("dest\rFAKE\nWARN fake line");
    let out = m.run(&[
        "-v",
        "store",
        "copy",
        &digest,
        "--kind",
        "blob",
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_safe(&out);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let copying: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("copying to"))
        .collect();
    assert!(!copying.is_empty(), "the copy is logged at -v: {stderr}");
    for line in copying {
        assert!(line.contains("dest\\rFAKE\\nWARN fake line"), "{line}");
    }
    assert!(
        !stderr.lines().any(|l| l.starts_with("WARN fake line")),
        "{stderr}"
    );
}

#[test]
fn an_error_naming_a_path_with_a_newline_shows_it_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let m = machine(tmp.path());
    let missing = tmp.path().join("no\nsuch\rfile");
    let out = m.run(&["store", "add", missing.to_str().unwrap()]);
    assert_safe(&out);
    let line = support::refused(&out, 1, "no\\nsuch\\rfile");
    assert!(line.starts_with("error: reading "), "{line}");
    // As JSON the message holds the name as it is.
    let out = m.run(&["--json", "store", "add", missing.to_str().unwrap()]);
    assert_safe(&out);
    support::refused(&out, 1, "no\nsuch\rfile");
}
