//! Reproducible under variation, not only on rerun (as reprotest checks):
//! every example of `examples/` (each directory with a `cairn.toml`; a
//! test fails when one is not listed here) is built twice from clean
//! stores, the second time with the project copied elsewhere under
//! another name (its files created in reverse order, their times ten days
//! ahead), another store path, umask 077, another hostname (a new UTS
//! namespace), another user name and home, another locale, a time zone
//! fourteen hours away, `SOURCE_DATE_EPOCH` ten days later and the
//! monotonic and boot clocks ten days ahead (a new time namespace, which
//! the sandboxes inherit); see `support/surroundings.rs`. The artifacts
//! must be identical, byte for byte: a difference fails naming the
//! example, the step, the file and the first differing bytes of both.
//! go-hello and zig-hello run their whole `cairn test` both times, so
//! both release targets (amd64 and arm64) are built and each binary is
//! run on its platform (arm64 under QEMU) in both surroundings.
//!
//! A probe step prints what a step can see of those (hostname, ids,
//! umask, environment, directory order, its private `/tmp`, file modes,
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
//! shows a namespace's map to its members), and its `/proc/uptime` the
//! clock it saw; the probe records both beside what it saw, to prove the
//! variation reached the step.
//!
//! Needs `unshare` (util-linux), Debian's `busybox-static`, `gcc` with
//! `libc6-dev`, `golang-go`, `qemu-user-static` and the `ziglang` wheel
//! (`.ci/run` installs them); the test fails without them.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::cli::Machine;
use support::project::{copy_example, examples};
use support::surroundings::{Order, Surroundings, PLAIN, VARIED};
use support::tree_diff;

/// How an example is built.
#[derive(Clone, Copy)]
enum Build {
    /// `cairn build`: the release step.
    Release,
    /// `cairn --json test`: every test and the steps they need; the
    /// artifacts are the steps that are not tests.
    Tests,
}

/// One example as this test builds it.
struct Spec {
    /// The directory under `examples/`.
    example: &'static str,
    /// Examples whose scripts its own scripts run (copied beside it).
    siblings: &'static [&'static str],
    /// Its setup scripts, in order.
    setup: &'static [&'static str],
    /// Whether its scripts take Zig from the `ziglang` wheel.
    zig: bool,
    build: Build,
}

const SPECS: [Spec; 6] = [
    Spec {
        example: "busybox-hello",
        siblings: &[],
        setup: &["make-rootfs.sh"],
        zig: false,
        build: Build::Release,
    },
    Spec {
        example: "c-hello",
        siblings: &[],
        setup: &["make-toolchain.sh"],
        zig: false,
        build: Build::Release,
    },
    Spec {
        example: "go-hello",
        siblings: &[],
        setup: &["make-trees.sh"],
        zig: false,
        build: Build::Tests,
    },
    Spec {
        example: "http-hello",
        siblings: &["c-hello"],
        setup: &["make-toolchain.sh", "make-rootfs.sh"],
        zig: false,
        build: Build::Release,
    },
    Spec {
        example: "pipeline",
        siblings: &[],
        setup: &["make-rootfs.sh"],
        zig: false,
        build: Build::Release,
    },
    Spec {
        example: "zig-hello",
        siblings: &[],
        setup: &["make-trees.sh"],
        zig: true,
        build: Build::Tests,
    },
];

fn spec(example: &str) -> &'static Spec {
    SPECS.iter().find(|s| s.example == example).unwrap()
}

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
  echo "tmp: $(ls -A /tmp)"
  ls -f /tests /src
  stat -c '%n %a %u %g %Y' /src /src/* /tests /tests/* /bin /bin/busybox /scratch /scratch/*
} > /out/seen.txt
mkdir /out/host && cat /proc/self/uid_map > /out/host/uid_map
cut -d ' ' -f 1 /proc/uptime > /out/host/uptime
"""]
"#;

/// The first host uid of the sandbox's range (`cairn_sandbox::FIRST_HOST_ID`).
const FIRST_HOST_ID: u32 = 0x7c00_0000;

/// An artifact: the step that made it, its output tree, its action.
#[derive(Debug)]
struct Artifact {
    step: String,
    output: String,
    action: Option<String>,
}

/// One build: where it ran and what it made.
struct Built {
    machine: Machine,
    artifacts: Vec<Artifact>,
}

/// Builds `spec` (with `recipe` instead of its own if given) under
/// `root` in surroundings `s`: the project copied (in `s`'s order, files
/// given `s`'s time), its setup scripts run, then built, all in `s`.
fn build(spec: &Spec, recipe: Option<&str>, root: &Path, s: Surroundings) -> Built {
    let (dir, store) = match s.order {
        Order::Sorted => (root.join("proj"), root.join("store")),
        Order::Reversed => (
            root.join("elsewhere/deeper/renamed"),
            root.join("other-store"),
        ),
    };
    let time = Some(s.file_time());
    copy_example(spec.example, &dir, s.order, time);
    for sibling in spec.siblings {
        copy_example(sibling, &dir.parent().unwrap().join(sibling), s.order, time);
    }
    if let Some(recipe) = recipe {
        std::fs::write(dir.join("cairn.toml"), recipe).unwrap();
    }
    let machine = Machine {
        store: Some(store.to_str().unwrap().to_owned()),
        cache: Some(root.join("cache")),
        dir: Some(dir.clone()),
        surroundings: Some(s),
        home: Some(root.join("home")),
        ..Machine::default()
    };
    // The wheel is found by the test's own Python (the surroundings'
    // environment has none of its settings) and given to both builds.
    let zig = spec.zig.then(ziglang);
    let env: Vec<(&str, &str)> = zig.iter().map(|z| ("ZIGLANG", z.as_str())).collect();
    for script in spec.setup {
        machine.script_with(&dir.join(script), &env);
    }
    let artifacts = match spec.build {
        Build::Release => vec![Artifact {
            step: "(release)".into(),
            output: machine.ok(&["build"]),
            action: None,
        }],
        Build::Tests => tested(spec, &machine),
    };
    Built { machine, artifacts }
}

/// Where the `ziglang` wheel is (its `ziglang/` directory).
fn ziglang() -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, ziglang; print(os.path.dirname(ziglang.__file__))",
        ])
        .output()
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "the ziglang wheel is missing: pip install ziglang"
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `cairn --json test`, which must pass with every step run (the store
/// is clean): the steps that are not tests.
fn tested(spec: &Spec, machine: &Machine) -> Vec<Artifact> {
    let (code, steps, err) = machine.test(&[]);
    assert_eq!(code, 0, "{}: {err}", spec.example);
    for s in &steps {
        assert_eq!(s["status"], "built", "{}: {s}", spec.example);
    }
    let field = |s: &Value, name: &str| s[name].as_str().unwrap().to_owned();
    // Listed as they finished: by name, to compare.
    let mut artifacts: Vec<Artifact> = steps
        .iter()
        .filter(|s| s["test"] == false)
        .map(|s| Artifact {
            step: field(s, "step"),
            output: field(s, "output"),
            action: Some(field(s, "action_digest")),
        })
        .collect();
    artifacts.sort_by(|x, y| x.step.cmp(&y.step));
    artifacts
}

/// The output `digest` of `machine`'s store, checked out into `into`
/// (plainly: the checkout itself is not under test).
fn checkout(machine: &Machine, digest: &str, into: &Path) {
    let plain = Machine {
        store: machine.store.clone(),
        ..Machine::default()
    };
    plain.ok(&["store", "checkout", digest, into.to_str().unwrap()]);
}

/// How `b`'s artifacts differ from `a`'s (both builds of `example`),
/// first by their bytes, checked out under `scratch`: the example, the
/// step, the file and the first differing bytes; `None` when every
/// artifact is identical (its bytes, its digest and its action).
fn difference(example: &str, a: &Built, b: &Built, scratch: &Path) -> Option<String> {
    let steps =
        |built: &Built| -> Vec<String> { built.artifacts.iter().map(|a| a.step.clone()).collect() };
    if steps(a) != steps(b) {
        return Some(format!(
            "{example}: other steps were built: {:?} and {:?}",
            steps(a),
            steps(b)
        ));
    }
    for (x, y) in a.artifacts.iter().zip(&b.artifacts) {
        let (in_a, in_b) = (
            scratch.join(format!("out-a/{}", x.step)),
            scratch.join(format!("out-b/{}", y.step)),
        );
        checkout(&a.machine, &x.output, &in_a);
        checkout(&b.machine, &y.output, &in_b);
        let step = &x.step;
        if let Some(d) = tree_diff::first_difference(&in_a, &in_b) {
            return Some(format!(
                "{example}: step {step}: the varied build differs: {d}"
            ));
        }
        if x.output != y.output {
            return Some(format!(
                "{example}: step {step}: outputs {} and {}",
                x.output, y.output
            ));
        }
        if x.action != y.action {
            return Some(format!(
                "{example}: step {step}: actions {:?} and {:?}",
                x.action, y.action
            ));
        }
    }
    None
}

/// Builds `example` plainly and varied; fails, naming the example, the
/// step, the file and the first differing bytes, unless every artifact
/// is identical.
fn identical_under_variation(example: &str) {
    let spec = spec(example);
    let tmp = tempfile::tempdir().unwrap();
    let a = build(spec, None, &tmp.path().join("a"), PLAIN);
    let b = build(spec, None, &tmp.path().join("b"), VARIED);
    assert!(!a.artifacts.is_empty(), "{example}: nothing was built");
    for artifact in a.artifacts.iter().chain(&b.artifacts) {
        assert!(
            artifact.output.starts_with("sha256:"),
            "{example}: {artifact:?}"
        );
    }
    if let Some(difference) = difference(example, &a, &b, tmp.path()) {
        panic!("{difference}");
    }
}

/// A step that writes what the sandbox leaves to the machine (its boot
/// clock) next to what it pins.
const LEAK: &str = r#"
[service]
name = "leak"

[inputs.rootfs]
path = "rootfs"

[steps.leak]
mounts = { "/" = "rootfs" }
env = { PATH = "/bin" }
run = ["/bin/sh", "-c", "mkdir /out/clock && hostname > /out/clock/a-host && cut -d ' ' -f 1 /proc/uptime > /out/clock/uptime"]
"#;

/// The comparison catches a leak, and says where: the example, the step,
/// the first differing file (not the identical one before it) and both
/// sides' bytes at the first differing offset.
#[test]
fn a_leak_is_named_with_its_file_and_first_differing_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = spec("pipeline");
    let a = build(pipeline, Some(LEAK), &tmp.path().join("a"), PLAIN);
    let b = build(pipeline, Some(LEAK), &tmp.path().join("b"), VARIED);
    let found = difference("pipeline", &a, &b, tmp.path()).expect("the clock leaked unseen");
    // The clocks the step read, as the comparison checked them out.
    let read =
        |side: &str| std::fs::read(tmp.path().join(side).join("(release)/clock/uptime")).unwrap();
    let (x, y) = (read("out-a"), read("out-b"));
    let at = x.iter().zip(&y).position(|(p, q)| p != q).unwrap();
    let first = format!(
        "pipeline: step (release): the varied build differs: clock/uptime: first differing byte at offset {at} "
    );
    assert!(found.starts_with(&first), "{found}");
    let (first, second) = found.split_once("\n  second: ").expect(&found);
    let (_, first) = first.split_once("\n  first: ").expect(&found);
    let byte = at % 16 * 3;
    assert_eq!(
        &first[10 + byte..12 + byte],
        format!("{:02x}", x[at]),
        "{found}"
    );
    assert_eq!(
        &second[10 + byte..12 + byte],
        format!("{:02x}", y[at]),
        "{found}"
    );
}

#[test]
fn every_example_is_built_under_variation() {
    let listed: Vec<&str> = SPECS.iter().map(|s| s.example).collect();
    assert_eq!(
        examples(),
        listed,
        "an example is missing from this test's SPECS (or one listed is gone)"
    );
}

#[test]
fn the_busybox_example_is_identical_under_variation() {
    identical_under_variation("busybox-hello");
}

#[test]
fn the_c_example_is_identical_under_variation() {
    identical_under_variation("c-hello");
}

#[test]
fn the_go_example_is_identical_under_variation_for_amd64_and_arm64() {
    identical_under_variation("go-hello");
}

#[test]
fn the_http_example_is_identical_under_variation() {
    identical_under_variation("http-hello");
}

#[test]
fn the_pipeline_example_is_identical_under_variation() {
    identical_under_variation("pipeline");
}

#[test]
fn the_zig_example_is_identical_under_variation_for_x86_64_and_aarch64() {
    identical_under_variation("zig-hello");
}

/// The host uid the probe ran as, from the `uid_map` it recorded.
fn host_uid(probe: &Path) -> u32 {
    let map = std::fs::read_to_string(probe.join("host/uid_map")).unwrap();
    let fields: Vec<u32> = map.split_whitespace().map(|f| f.parse().unwrap()).collect();
    assert_eq!(fields[0], 1000, "{map}");
    assert_eq!(fields[2], 1, "one id mapped: {map}");
    fields[1]
}

/// The uptime (seconds of the boot clock) the probe saw.
fn uptime(probe: &Path) -> f64 {
    let text = std::fs::read_to_string(probe.join("host/uptime")).unwrap();
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {text}"))
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

/// The probe's output of `built`, checked out into `into`.
fn probe_output(built: &Built, into: PathBuf) -> PathBuf {
    checkout(&built.machine, &built.artifacts[0].output, &into);
    into
}

#[test]
fn a_step_sees_the_same_machine_under_variation() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = spec("pipeline");
    let a = build(pipeline, Some(PROBE), &tmp.path().join("a"), PLAIN);
    let seen_a = probe_output(&a, tmp.path().join("seen-a"));
    let uid_a = host_uid(&seen_a);
    let slot = hold_slot(uid_a);
    let b = build(pipeline, Some(PROBE), &tmp.path().join("b"), VARIED);
    drop(slot);
    let seen_b = probe_output(&b, tmp.path().join("seen-b"));
    assert_ne!(host_uid(&seen_b), uid_a, "the host uid did not vary");
    // The clock the step saw was days ahead (less the minutes between).
    let ahead = uptime(&seen_b) - uptime(&seen_a);
    let days = f64::from(VARIED.days_ahead) * 86_400.0;
    assert!(
        ahead > days - 3_600.0 && ahead < days + 3_600.0,
        "the step's clock was {ahead} s ahead, not {} days",
        VARIED.days_ahead
    );

    let read = |dir: &Path| std::fs::read_to_string(dir.join("seen.txt")).unwrap();
    let (seen_a, seen_b) = (read(&seen_a), read(&seen_b));
    // It saw something (its commands ran), and the same both times.
    assert!(seen_a.contains("PATH=/bin"), "{seen_a}");
    assert!(seen_a.contains("greeting.txt"), "{seen_a}");
    assert_eq!(seen_a, seen_b, "what a step sees leaks the variation");
    // Its /tmp is its own, and empty when it starts.
    assert!(seen_a.lines().any(|l| l == "tmp: "), "{seen_a}");
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
