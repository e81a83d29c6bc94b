//! Reproducible under variation, not only on rerun (as reprotest checks):
//! each example (busybox-hello, c-hello, http-hello, pipeline) is built twice from clean stores, the second time with the
//! project copied elsewhere under another name (its files created in
//! reverse order), another store path, umask 077, another hostname (a new
//! UTS namespace), another user name and home, another locale, a time
//! zone fourteen hours away and `SOURCE_DATE_EPOCH` ten days later; the
//! artifacts must be identical. A probe step prints what a step can see of
//! those (hostname, ids, umask, environment, directory order, file modes,
//! owners and modification times of its inputs, writable ones included)
//! and must print the same both times: the sandbox pins them. The stores
//! are made at different times, so the blobs' own times differ; the
//! materialized inputs' times are pinned to 1.
//!
//! The user id, varied as far as it can be: the sandbox's memory and
//! process limits are v1 cgroups only root can create, so cairn runs as
//! root both times; what changes is the host user each step is mapped to
//! (one of the sandbox's dedicated ids, chosen per step from free slots).
//! The probe's second build runs while this test holds the slot its
//! first build's step used, so its step runs as another host uid, and
//! sees the same. Its `/proc/self/uid_map` names that host uid (the kernel
//! shows a namespace's map to its members); the probe records it beside
//! what it saw, to prove the variation happened.
//!
//! Needs `unshare` (util-linux), Debian's `busybox-static` and `gcc` with
//! `libc6-dev` (`.ci/run` installs them); the test fails without them.

use std::path::{Path, PathBuf};
use std::process::Command;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");

/// What a step can see of the machine it runs on, written to its output.
const PROBE: &str = r#"
[service]
name = "probe"

[inputs.rootfs]
path = "rootfs"

[inputs.src]
path = "src"

[inputs.tests]
path = "tests"

[steps.probe]
mounts = { "/" = "rootfs", "/src" = "src", "/tests" = "tests", "/scratch" = { input = "tests", writable = true } }
env = { PATH = "/bin" }
run = ["/bin/sh", "-c", """
{
  hostname; id -u; id -g; umask; pwd; env | sort
  ls -f /tests /src
  stat -c '%n %a %u %g %Y' /src /src/* /tests /tests/* /bin /bin/busybox /scratch /scratch/*
} > /out/seen.txt
mkdir /out/host && cat /proc/self/uid_map > /out/host/uid_map
"""]
"#;

/// The first host uid of the sandbox's range (`cairn_sandbox::FIRST_HOST_ID`).
const FIRST_HOST_ID: u32 = 0x7c00_0000;

/// One build's surroundings.
struct Variant {
    hostname: Option<&'static str>,
    umask: &'static str,
    user: &'static str,
    locale: &'static str,
    tz: &'static str,
    epoch: u64,
    reverse: bool,
}

const PLAIN: Variant = Variant {
    hostname: None,
    umask: "022",
    user: "builder",
    locale: "C.UTF-8",
    tz: "UTC",
    epoch: 1_700_000_000,
    reverse: false,
};

const VARIED: Variant = Variant {
    hostname: Some("reprotest-elsewhere"),
    umask: "077",
    user: "someone",
    locale: "fr_FR.UTF-8",
    tz: "Pacific/Kiritimati",
    epoch: 1_700_000_000 + 10 * 86_400,
    reverse: true,
};

/// Every regular file under `dir` (relative, sorted), skipping the trees
/// the setup scripts make.
fn files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let path = rel.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            if !matches!(path.to_str(), Some("rootfs" | "toolchain")) {
                files(dir, &path, out);
            }
        } else {
            assert!(kind.is_file(), "{}: not a regular file", path.display());
            out.push(path);
        }
    }
    out.sort();
}

/// Copies the project `from` to `to`, creating its files in sorted or
/// reverse order.
fn copy_project(from: &Path, to: &Path, reverse: bool) {
    let mut all = Vec::new();
    files(from, Path::new(""), &mut all);
    if reverse {
        all.reverse();
    }
    for rel in all {
        let dest = to.join(&rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&rel), &dest).unwrap();
    }
}

/// Runs `argv` in `dir` with `v`'s surroundings; returns its stdout.
fn run(v: &Variant, home: &Path, dir: &Path, store: &Path, argv: &[&str]) -> String {
    let script = match v.hostname {
        Some(h) => format!("hostname {h} && umask {} && exec \"$@\"", v.umask),
        None => format!("umask {} && exec \"$@\"", v.umask),
    };
    let mut cmd = if v.hostname.is_some() {
        let mut c = Command::new("unshare");
        c.args(["--uts", "sh", "-c", &script, "sh"]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &script, "sh"]);
        c
    };
    let out = cmd
        .args(argv)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", home)
        .env("USER", v.user)
        .env("LOGNAME", v.user)
        .env("LANG", v.locale)
        .env("LC_ALL", v.locale)
        .env("TZ", v.tz)
        .env("SOURCE_DATE_EPOCH", v.epoch.to_string())
        .env("XDG_STATE_HOME", home.join("state"))
        .env("CAIRN", CAIRN)
        .env("CAIRN_STORE", store)
        .output()
        .expect("sh and unshare (util-linux) must be installed");
    assert!(
        out.status.success(),
        "{argv:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Builds the project at `project` (after its setup scripts) under
/// `root` with `v`'s surroundings: the output digest and the output's
/// `seen.txt` if it has one.
fn build(project: &Path, recipe: Option<&str>, setup: &[&str], root: &Path, v: &Variant) -> String {
    let dir = root.join(if v.reverse {
        "elsewhere/deeper/renamed"
    } else {
        "proj"
    });
    copy_project(project, &dir, v.reverse);
    // http-hello's toolchain script runs c-hello's, next to it.
    let sibling = dir.parent().unwrap().join("c-hello");
    std::fs::create_dir_all(&sibling).unwrap();
    let script = "make-toolchain.sh";
    std::fs::copy(
        Path::new(EXAMPLES).join("c-hello").join(script),
        sibling.join(script),
    )
    .unwrap();
    if let Some(recipe) = recipe {
        std::fs::write(dir.join("cairn.toml"), recipe).unwrap();
    }
    let store = root.join(if v.reverse { "other-store" } else { "store" });
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    for script in setup {
        run(v, &home, &dir, &store, &["sh", script]);
    }
    let digest = run(
        v,
        &home,
        &dir,
        &store,
        &[CAIRN, "--store", store.to_str().unwrap(), "build"],
    );
    digest.trim().to_owned()
}

/// Builds `example` plainly and varied: both artifacts, and the temporary
/// directory holding both builds (stores `a/store` and `b/other-store`).
fn both(
    example: &str,
    setup: &[&str],
    recipe: Option<&str>,
) -> (String, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let project = Path::new(EXAMPLES).join(example);
    let a = build(&project, recipe, setup, &tmp.path().join("a"), &PLAIN);
    let b = build(&project, recipe, setup, &tmp.path().join("b"), &VARIED);
    assert!(a.starts_with("sha256:"), "{a}");
    (a, b, tmp)
}

#[test]
fn the_c_example_is_identical_under_variation() {
    let (a, b, _tmp) = both("c-hello", &["make-toolchain.sh"], None);
    assert_eq!(a, b, "c-hello: the varied build differs");
}

#[test]
fn the_pipeline_example_is_identical_under_variation() {
    let (a, b, _tmp) = both("pipeline", &["make-rootfs.sh"], None);
    assert_eq!(a, b, "pipeline: the varied build differs");
}

#[test]
fn the_busybox_example_is_identical_under_variation() {
    let (a, b, _tmp) = both("busybox-hello", &["make-rootfs.sh"], None);
    assert_eq!(a, b, "busybox-hello: the varied build differs");
}

#[test]
fn the_http_example_is_identical_under_variation() {
    let setup = ["make-toolchain.sh", "make-rootfs.sh"];
    let (a, b, _tmp) = both("http-hello", &setup, None);
    assert_eq!(a, b, "http-hello: the varied build differs");
}

/// The output `digest` of `store`, checked out into `into`.
fn checkout(store: &Path, digest: &str, into: &Path) {
    let out = Command::new(CAIRN)
        .arg("--store")
        .arg(store)
        .args(["store", "checkout", digest])
        .arg(into)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The host uid the probe ran as, from the `uid_map` it recorded.
fn host_uid(probe: &Path) -> u32 {
    let map = std::fs::read_to_string(probe.join("host/uid_map")).unwrap();
    let fields: Vec<u32> = map.split_whitespace().map(|f| f.parse().unwrap()).collect();
    assert_eq!(fields[0], 1000, "{map}");
    assert_eq!(fields[2], 1, "one id mapped: {map}");
    fields[1]
}

/// Holds the sandbox's slot lock of host uid `uid` until dropped, so no
/// step started meanwhile runs as that uid.
fn hold_slot(uid: u32) -> std::fs::File {
    use rustix::fs::{flock, FlockOperation};
    assert!(
        (FIRST_HOST_ID..FIRST_HOST_ID + 256).contains(&uid),
        "host uid {uid} is not one of the sandbox's: is the test root?"
    );
    let path = format!("/run/cairn-sandbox/slot-{}", uid - FIRST_HOST_ID);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    flock(&file, FlockOperation::LockExclusive).unwrap();
    file
}

#[test]
fn a_step_sees_the_same_machine_under_variation() {
    let tmp = tempfile::tempdir().unwrap();
    let project = Path::new(EXAMPLES).join("pipeline");
    let setup = ["make-rootfs.sh"];
    let a = build(&project, Some(PROBE), &setup, &tmp.path().join("a"), &PLAIN);
    let seen_a = tmp.path().join("seen-a");
    checkout(&tmp.path().join("a/store"), &a, &seen_a);
    let uid_a = host_uid(&seen_a);
    let slot = hold_slot(uid_a);
    let b = build(
        &project,
        Some(PROBE),
        &setup,
        &tmp.path().join("b"),
        &VARIED,
    );
    drop(slot);
    let seen_b = tmp.path().join("seen-b");
    checkout(&tmp.path().join("b/other-store"), &b, &seen_b);
    assert_ne!(host_uid(&seen_b), uid_a, "the host uid did not vary");

    let read = |dir: &Path| std::fs::read_to_string(dir.join("seen.txt")).unwrap();
    let (seen_a, seen_b) = (read(&seen_a), read(&seen_b));
    // It saw something (its commands ran), and the same both times.
    assert!(seen_a.contains("PATH=/bin"), "{seen_a}");
    assert!(seen_a.contains("greeting.txt"), "{seen_a}");
    assert_eq!(seen_a, seen_b, "what a step sees leaks the variation");
    // Every input's time is pinned, the writable copy's included.
    let stats: Vec<&str> = seen_a
        .lines()
        .filter(|l| l.starts_with('/') && l.split(' ').count() == 5)
        .collect();
    assert!(stats.iter().any(|l| l.starts_with("/scratch/")), "{seen_a}");
    for line in stats {
        assert!(line.ends_with(" 1"), "{line}: not time 1");
    }
}
