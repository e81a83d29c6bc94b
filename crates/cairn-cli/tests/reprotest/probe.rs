//! What the variation reaches and what the comparison catches: a probe
//! step sees the same machine both times though its host uid and clock
//! varied, and a step that leaks the clock is named with its file and
//! first differing bytes.

use std::path::{Path, PathBuf};

use crate::support::surroundings::{PLAIN, VARIED};
use crate::variation::{build, checkout, difference, spec, Built};

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
