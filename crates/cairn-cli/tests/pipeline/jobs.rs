//! Steps in parallel: independent steps run at once up to `--jobs`, a
//! failed step fails only what needs it, and a cached step needs no slot.

use serde_json::Value;

use crate::example;
use crate::support::cli::{step, text};

/// Steps `a` and `b` are independent, `c` needs `a`. Each prints when it
/// starts and, after a pause, when it ends; the live log order shows what
/// ran at the same time.
pub const PARALLEL: &str = r#"
[service]
name = "parallel"

[inputs.rootfs]
path = "rootfs"

[steps.a]
mounts = { "/" = "rootfs" }
env = { PATH = "/bin" }
run = ["/bin/sh", "-c", "echo start-a; sleep 3; echo end-a; echo a > $OUT/a"]

[steps.b]
mounts = { "/" = "rootfs" }
env = { PATH = "/bin" }
run = ["/bin/sh", "-c", "echo start-b; sleep 3; echo end-b"]

[steps.c]
test = true
mounts = { "/" = "rootfs", "/a" = "steps.a" }
env = { PATH = "/bin" }
run = ["/bin/sh", "-c", "echo start-c; cat /a/a"]
"#;

fn order(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
        .filter(|l| l.starts_with("start-") || l.starts_with("end-"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn independent_steps_run_in_parallel_up_to_jobs() {
    let p = example();
    p.write("cairn.toml", PARALLEL);

    // --jobs 1: one step at a time; c after a.
    let out = p.run(&["build", "--all", "--jobs", "1", "--no-cache"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = order(&text(&out.stderr));
    assert_eq!(seen.len(), 5, "{seen:?}");
    for pair in seen[..4].chunks(2) {
        let step = pair[0].trim_start_matches("start-");
        assert_eq!(
            pair[1],
            format!("end-{step}"),
            "overlap under --jobs 1: {seen:?}"
        );
    }
    let pos = |what: &str| seen.iter().position(|s| s == what).unwrap();
    assert!(pos("start-c") > pos("end-a"), "{seen:?}");

    // --jobs 2: a and b both start before either ends; c still after a.
    let out = p.run(&["--json", "build", "--all", "--jobs", "2", "--no-cache"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = order(&text(&out.stderr));
    let pos = |what: &str| seen.iter().position(|s| s == what).unwrap();
    assert!(
        pos("start-a") < pos("end-b") && pos("start-b") < pos("end-a"),
        "{seen:?}"
    );
    assert!(pos("start-c") > pos("end-a"), "{seen:?}");
    let steps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(steps.as_array().unwrap().len(), 3);

    // A failed step fails only what needs it: b still runs, c is skipped.
    p.write("cairn.toml", &PARALLEL.replace("echo end-a;", "exit 3;"));
    let out = p.run(&["--json", "build", "--all", "--jobs", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let steps: Vec<Value> = serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(step(&steps, "a")["status"], "failed");
    assert_ne!(step(&steps, "b")["status"], "failed");
    assert_eq!(step(&steps, "c")["status"], "skipped");
    assert!(
        step(&steps, "c")["error"]
            .as_str()
            .unwrap()
            .contains("step `a`"),
        "{steps:?}"
    );
}

#[test]
fn a_cached_step_does_not_wait_for_a_job_slot() {
    let p = example();
    p.write(
        "cairn.toml",
        r#"
[service]
name = "slots"

[inputs.rootfs]
path = "rootfs"

[steps.a]
mounts = { "/" = "rootfs" }
env = { PATH = "/bin" }
run = ["/bin/sh", "-c", "sleep 3; echo a > $OUT/a"]

[steps.z]
mounts = { "/" = "rootfs" }
env = { PATH = "/bin" }
run = ["/bin/sh", "-c", "echo z > $OUT/z"]
"#,
    );
    let out = p.run(&["build", "z"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // One slot, taken by `a` (first by name) for three seconds: `z`, a
    // cache hit, needs no slot and ends first (steps are listed in the
    // order they ended).
    let out = p.run(&["--json", "build", "--all", "--jobs", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let steps: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ended: Vec<(&str, &str)> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(ended, [("z", "cached"), ("a", "built")]);
}
