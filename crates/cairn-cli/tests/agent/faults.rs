//! The world failing around the agent: the store going away, a corrupt
//! blob, a full disk; and the service trying to write into its code.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::fixture::{cairn, fixture, SERVICE};
use crate::harness::{dir, eventually, free_port, hex, Options, Server, TestAgent};

const T: Duration = Duration::from_secs(30);

#[test]
fn a_store_outage_keeps_the_service_and_the_agent_catches_up() {
    let fx = fixture();
    let token = fx.agent_token("agent-outage");
    let addr = free_port();
    let server = Server::start(&fx.store, addr);
    let options = Options {
        store: Some(format!("http://{addr}")),
        token: Some(token),
        ..Options::default()
    };
    let mut a = TestAgent::new("outage", options);
    a.start();
    fx.promote(&fx.v1, "outage", "ci", None);
    a.wait_serving("1", T);

    drop(server);
    fx.promote(&fx.v2, "outage", "ci", None);
    a.wait_for("the outage noticed", T, |s| {
        s["counters"]["store_errors"].as_u64() >= Some(1)
            && s["member"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("store unreachable"))
    });
    // Six seconds without a store: v1 answers throughout, and the agent
    // backs off (polling every 500 ms without backoff would fail 12 times).
    for _ in 0..12 {
        assert_eq!(a.version().as_deref(), Some("1"));
        std::thread::sleep(Duration::from_millis(500));
    }
    let errors = a.status().unwrap()["counters"]["store_errors"]
        .as_u64()
        .unwrap();
    assert!(
        (1..=6).contains(&errors),
        "{errors} failed reads in 6 s: no backoff?"
    );

    let _server = Server::start(&fx.store, addr);
    let s = a.wait_serving("2", Duration::from_secs(60));
    assert!(s["member"]["last_error"].is_null(), "{s}");
    // Its member record reaches the store again (written by the fleet
    // driver once it decides after the swap).
    let mut json = String::new();
    let reported = eventually(T, || {
        json = cairn(
            &fx.store,
            &fx.keys,
            &fx.root,
            &["--json", "status", SERVICE, "--set", "outage"],
        );
        let report: serde_json::Value = serde_json::from_str(&json).unwrap();
        report["members"][0]["record"]["version"] == "2"
    });
    assert!(reported, "{json}");
}

#[test]
fn a_corrupt_blob_fails_the_fetch_and_nothing_runs() {
    let fx = fixture();
    let test_dir = dir(&fx.root.join("tests/corrupt-store"));
    let store = test_dir.join("store");
    let _ = std::fs::remove_dir_all(&store);
    assert!(Command::new("cp")
        .arg("-al")
        .arg(&fx.store)
        .arg(&store)
        .status()
        .unwrap()
        .success());
    // The v2 binary's blob, replaced (not rewritten: it is a hard link
    // into the shared store) by bytes of the same size.
    let listing = cairn(
        &store,
        &fx.keys,
        &fx.root,
        &["--json", "store", "ls", &fx.artifact(&fx.v2)],
    );
    let entries: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let digest = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "http-hello")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let h = hex(&digest);
    let blob = store.join("blobs").join(&h[..2]).join(h);
    let size = std::fs::metadata(&blob).unwrap().len();
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, vec![b'x'; size as usize]).unwrap();

    let options = Options {
        store: Some(store.display().to_string()),
        ..Options::default()
    };
    let mut a = TestAgent::new("corrupt", options);
    a.start();
    cairn(
        &store,
        &fx.keys,
        &fx.root,
        &["promote", &fx.v1, "--channel", "corrupt", "--key", "ci"],
    );
    a.wait_serving("1", T);
    cairn(
        &store,
        &fx.keys,
        &fx.root,
        &["promote", &fx.v2, "--channel", "corrupt", "--key", "ci"],
    );
    let s = a.wait_for("the failed fetch", T, |s| {
        s["counters"]["fetch_errors"].as_u64() >= Some(1)
    });
    let error = s["member"]["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("blob sha256:{}", &h[..12])) && error.contains("is corrupt"),
        "{error}"
    );
    assert_eq!(a.version().as_deref(), Some("1"));
    assert!(!a.has_blob(&digest), "the corrupt blob was not kept");
    assert!(!a.has_blob(&fx.artifact(&fx.v2)), "nor the tree naming it");
    assert_eq!(a.generations().len(), 1, "{:?}", a.generations());
    assert_eq!(a.service_pids().len(), 1);
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "cairn-test"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs at {} (needs root)", at.display());
        Self(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with `path` until fewer than `spare`
/// bytes are left.
fn fill(path: &Path, spare: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0u64;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = f.sync_all();
    f.set_len(written.saturating_sub(spare)).unwrap();
}

#[test]
fn a_full_disk_fails_the_fetch_cleanly() {
    let fx = fixture();
    let test_dir = dir(&fx.root.join("tests/diskfull-mnt"));
    let _tmpfs = Tmpfs::mount(&test_dir, "12m");
    let state = test_dir.join("state");
    let mut a = TestAgent::new(
        "diskfull",
        Options {
            state_dir: Some(state),
            ..Options::default()
        },
    );
    a.start();
    fx.promote(&fx.v1, "diskfull", "ci", None);
    a.wait_serving("1", T);

    let filler = test_dir.join("filler");
    fill(&filler, 200 << 10);
    fx.promote(&fx.v2, "diskfull", "ci", None);
    let s = a.wait_for("the failed fetch", T, |s| {
        s["counters"]["fetch_errors"].as_u64() >= Some(1)
    });
    let error = s["member"]["last_error"].as_str().unwrap();
    assert!(error.contains("No space left on device"), "{error}");
    assert_eq!(a.version().as_deref(), Some("1"));
    assert_eq!(a.generations().len(), 1, "{:?}", a.generations());
    assert_eq!(s["member"]["state"], "running");
    assert_eq!(
        a.state_json()["processes"].as_array().unwrap().len(),
        1,
        "state.json intact"
    );

    // Room again: the retry (with backoff) goes through.
    std::fs::remove_file(&filler).unwrap();
    a.wait_serving("2", Duration::from_secs(90));
    assert_eq!(a.version().as_deref(), Some("2"));
    a.kill9(); // before the tmpfs goes
}

#[test]
fn the_service_cannot_write_into_its_generation() {
    let fx = fixture();
    // The service's user must be able to reach its generation: the state
    // directory goes where every user may traverse, whatever the mode of
    // the checkout this test runs from (a fresh `mktemp -d` is 0700).
    let reachable = tempfile::tempdir().unwrap();
    std::fs::set_permissions(reachable.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let options = Options {
        top: "user = \"nobody\"\n".into(),
        extra: "\n[env]\nHELLO_TRY_WRITE = \"1\"\n".into(),
        state_dir: Some(reachable.path().join("state")),
        ..Options::default()
    };
    let mut a = TestAgent::new("readonly", options);
    a.start();
    fx.promote(&fx.v1, "readonly", "ci", None);
    a.wait_serving("1", T);
    let pid = a.service_pids()[0];
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().nth(1) == Some("65534"),
        "runs as nobody: {uid}"
    );
    assert!(eventually(T, || {
        std::fs::read_to_string(a.state.join(format!("logs/{SERVICE}.log")))
            .is_ok_and(|l| l.contains("cwd writable:"))
    }));
    let logs = std::fs::read_to_string(a.state.join(format!("logs/{SERVICE}.log"))).unwrap();
    let line = logs.lines().find(|l| l.contains("cwd writable:")).unwrap();
    assert!(!line.ends_with("yes"), "{line}");
    assert!(
        line.contains("Read-only file system") || line.contains("Permission denied"),
        "{line}"
    );
    let generation = a
        .state
        .join("generations")
        .join(format!("1-{}", hex(&fx.v1)));
    assert!(!generation.join(".write-test").exists());
}

#[test]
fn the_service_cannot_write_into_its_generation_even_as_root() {
    let fx = fixture();
    let extra = "\n[env]\nHELLO_TRY_WRITE = \"1\"\n".to_string();
    let mut a = TestAgent::new(
        "readonly-root",
        Options {
            extra,
            ..Options::default()
        },
    );
    a.start();
    fx.promote(&fx.v1, "readonly-root", "ci", None);
    a.wait_serving("1", T);
    let log = a.state.join(format!("logs/{SERVICE}.log"));
    assert!(eventually(T, || std::fs::read_to_string(&log)
        .is_ok_and(|l| l.contains("cwd writable:"))));
    let logs = std::fs::read_to_string(&log).unwrap();
    let line = logs.lines().find(|l| l.contains("cwd writable:")).unwrap();
    assert!(line.ends_with("Read-only file system"), "{line}");
}
