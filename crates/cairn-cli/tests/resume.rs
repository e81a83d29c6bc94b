//! Copies resume: after a copy to a durable destination is interrupted, a
//! rerun sends only what the destination still lacks, measured in bytes.
//!
//! Two interruptions: a local destination that runs out of space (a small
//! tmpfs, then grown; needs root to mount), and the copying process killed
//! with SIGKILL while it uploads to a `cairn server` (whose `/metrics`
//! counts the request bytes it received).

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::cli::{token, Machine, CAIRN};
use support::{refused, Server};

/// Files in the copied tree, and the size of each: above the batch limit
/// (so each travels alone) and below the chunk threshold (so each travels
/// whole and the bytes add up exactly).
const FILES: usize = 240;
const FILE_SIZE: usize = 100 << 10;

/// `cairn --store STORE ARGS…`, with no store or token from the test's
/// environment.
fn cairn(store: &Path, args: &[&str]) -> Output {
    let machine = Machine {
        store: Some(store.to_str().unwrap().to_owned()),
        ..Machine::default()
    };
    machine.run(args)
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A source store holding a tree of [`FILES`] distinct files; its digest.
fn source(root: &Path) -> (PathBuf, String) {
    let dir = root.join("tree");
    for i in 0..FILES {
        let sub = dir.join(format!("d{}", i % 6));
        std::fs::create_dir_all(&sub).unwrap();
        let mut bytes = format!("file {i} ").repeat(FILE_SIZE / 8).into_bytes();
        bytes.resize(FILE_SIZE, b'.');
        std::fs::write(sub.join(format!("f{i}")), bytes).unwrap();
    }
    let store = root.join("source");
    let digest = ok(cairn(&store, &["store", "add", dir.to_str().unwrap()]));
    (store, digest)
}

/// The report of `cairn --json store copy`.
fn copy_report(out: Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// Every blob file in a local store, by name, with its size.
fn blobs_in(store: &Path) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let Ok(dirs) = std::fs::read_dir(store.join("blobs")) else {
        return out;
    };
    for dir in dirs {
        for blob in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let blob = blob.unwrap();
            let size = blob.metadata().unwrap().len();
            out.insert(blob.file_name().into_string().unwrap(), size);
        }
    }
    out
}

/// What a whole copy of `digest` moves: blobs and bytes (into a fresh
/// directory store).
fn whole_copy(source: &Path, digest: &str, root: &Path) -> (u64, u64) {
    let fresh = root.join("reference");
    let args = [
        "--json",
        "store",
        "copy",
        digest,
        "--to",
        fresh.to_str().unwrap(),
    ];
    let report = copy_report(cairn(source, &args));
    let blobs = report["blobs_copied"].as_u64().unwrap();
    assert_eq!(report["blobs_total"].as_u64().unwrap(), blobs);
    assert_eq!(blobs as usize, FILES + 7, "{report}");
    (blobs, report["bytes_copied"].as_u64().unwrap())
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_copy_that_filled_its_destination_resumes_with_only_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (source, digest) = source(root);
    let (blobs_total, bytes_total) = whole_copy(&source, &digest, root);

    // The destination's file system fills up a third of the way.
    let mnt = root.join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let size = format!("size={}", bytes_total / 3);
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success(), "this test needs root to mount a tmpfs");
    let _unmount = Unmount(mnt.clone());
    let dest = mnt.join("store");
    let dest_arg = dest.to_str().unwrap();
    let args = ["--json", "store", "copy", &digest, "--to", dest_arg];
    refused(&cairn(&source, &args), 1, "No space left on device");
    let kept = blobs_in(&dest);
    let kept_bytes: u64 = kept.values().sum();
    assert!(
        !kept.is_empty() && (kept.len() as u64) < blobs_total,
        "the copy was not interrupted: {} of {blobs_total} blobs",
        kept.len()
    );

    // Room again: the rerun moves exactly what the first run did not.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=256m"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(grown.success());
    let rerun = copy_report(cairn(&source, &args));
    assert_eq!(
        rerun["blobs_copied"].as_u64().unwrap(),
        blobs_total - kept.len() as u64,
        "{rerun}"
    );
    assert_eq!(
        rerun["bytes_copied"].as_u64().unwrap(),
        bytes_total - kept_bytes,
        "{rerun}"
    );
    let again = copy_report(cairn(&source, &args));
    assert_eq!(again["bytes_copied"], 0, "{again}");
    ok(cairn(&dest, &["store", "verify"]));
    let out = root.join("out");
    ok(cairn(
        &dest,
        &["store", "checkout", &digest, out.to_str().unwrap()],
    ));
}

/// `cairn_http_request_bytes_total` of the server at `url` (`http://`).
fn request_bytes(url: &str, token: &str) -> u64 {
    let addr = url.strip_prefix("http://").expect("a plain HTTP server");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .lines()
        .find_map(|l| l.strip_prefix("cairn_http_request_bytes_total "))
        .expect("the request bytes counter")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_killed_copy_to_a_server_resumes_with_only_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (source, digest) = source(root);
    let (blobs_total, bytes_total) = whole_copy(&source, &digest, root);

    let served = root.join("served");
    let token = token(&served, "copier", &["read", "write"]);
    let server = Server::start(&served, &[] as &[&str]);
    let url = server.url.clone();

    // Killed once the server holds a quarter of the tree's blobs.
    let mut copier = Command::new(CAIRN)
        .env_remove("CAIRN_STORE")
        .arg("--store")
        .arg(&source)
        .env("CAIRN_TOKEN", &token)
        .args(["store", "copy", &digest, "--to", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (blobs_in(&served).len() as u64) < blobs_total / 4 {
        assert!(
            Instant::now() < deadline,
            "the blobs did not arrive in 60 s"
        );
        assert!(copier.try_wait().unwrap().is_none(), "the copy ended early");
        std::thread::sleep(Duration::from_millis(1));
    }
    copier.kill().unwrap();
    let status = copier.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the copy finished before it was killed"
    );
    // Uploads the kill cut off store nothing; what is there is whole.
    std::thread::sleep(Duration::from_millis(200));
    let kept = blobs_in(&served);
    let kept_bytes: u64 = kept.values().sum();
    assert!(
        (kept.len() as u64) < blobs_total,
        "the copy was not interrupted"
    );
    eprintln!(
        "killed with {} of {blobs_total} blobs on the server",
        kept.len()
    );

    let before = request_bytes(&url, &token);
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), &token).unwrap();
    let token_file = token_file.path().to_str().unwrap().to_owned();
    let args = [
        "--json",
        "--token-file",
        &token_file,
        "store",
        "copy",
        &digest,
        "--to",
        &url,
    ];
    let rerun = copy_report(cairn(&source, &args));
    let received = request_bytes(&url, &token) - before;
    let missing = bytes_total - kept_bytes;
    assert_eq!(
        rerun["blobs_copied"].as_u64().unwrap(),
        blobs_total - kept.len() as u64,
        "{rerun}"
    );
    assert_eq!(rerun["bytes_copied"].as_u64().unwrap(), missing, "{rerun}");
    // The server received the missing bytes and little else: the questions
    // about what it holds (a digest is about 100 bytes of JSON).
    let questions = 64 << 10;
    assert!(
        received >= missing && received <= missing + questions,
        "the server received {received} bytes for {missing} missing"
    );
    let again = copy_report(cairn(&source, &args));
    assert_eq!(again["bytes_copied"], 0, "{again}");
    ok(cairn(&served, &["store", "verify"]));
    drop(server);
}
