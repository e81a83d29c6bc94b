//! Whole pipelines end to end: the real binary runs `examples/pipeline`
//! (a build, two test steps, a release gated on them) in real sandboxes.
//! `cairn test` caches passes and never failures, shows a failed test's
//! log and report, runs independent steps in parallel up to `--jobs`, and
//! `cairn release` refuses until the required tests passed on the same
//! inputs. The root file system is Debian's `busybox-static` (the tests
//! fail if it is missing, `.ci/run` installs it).

mod support;

use std::process::Command;

use serde_json::Value;
use support::cli::{step, text};
use support::project::Project;
use support::refused;

/// `examples/pipeline` copied into a temp dir, its rootfs made, key `ci`.
fn example() -> Project {
    let p = Project::example("pipeline");
    p.setup("make-rootfs.sh");
    p.ok(&["key", "generate", "ci"]);
    p
}

#[test]
fn a_passing_test_is_cached_until_its_inputs_change() {
    let p = example();
    let (code, steps, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(steps.len(), 3, "the two tests and the build they need");
    for name in ["build", "unit", "lint"] {
        assert_eq!(step(&steps, name)["status"], "built", "{name}");
    }
    assert_eq!(step(&steps, "unit")["test"], true);
    assert_eq!(step(&steps, "build")["test"], false);
    assert!(err.contains("[unit] ok   greets"), "{err}");

    // No change: everything comes from the action cache, nothing runs.
    let (code, again, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    for name in ["build", "unit", "lint"] {
        assert_eq!(step(&again, name)["status"], "cached", "{name}");
        assert_eq!(step(&again, name)["cached"], true, "{name}");
        assert_eq!(
            step(&again, name)["action_digest"],
            step(&steps, name)["action_digest"]
        );
    }
    assert!(!err.contains("ok   greets"), "a cached test ran: {err}");

    // The report is the test's output.
    let output = step(&steps, "unit")["output"].as_str().unwrap().to_owned();
    let ls = p.run(&["--json", "store", "ls", "-r", &output]);
    assert!(
        text(&ls.stdout).contains("junit.xml"),
        "{}",
        text(&ls.stdout)
    );

    // A one-line change to what `unit` tests reruns it (and the build);
    // `lint`, whose inputs did not change, stays cached.
    p.write("src/greeting.txt", "hello again\n");
    p.write("tests/expected.txt", "hello again\n");
    let (code, third, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(step(&third, "build")["status"], "built");
    assert_eq!(step(&third, "unit")["status"], "built");
    assert_ne!(
        step(&third, "unit")["action_digest"],
        step(&steps, "unit")["action_digest"]
    );
    // lint mounts src too: it reran, and passed.
    assert_eq!(step(&third, "lint")["status"], "built");
    // Only the test's expectations changed: the build is cached.
    p.write("tests/expected.txt", "hello again\n\n");
    let (code, fourth, err) = p.test(&["unit"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(fourth.len(), 2, "{fourth:?}");
    assert_eq!(step(&fourth, "build")["status"], "cached");
    assert_eq!(step(&fourth, "unit")["status"], "built");
}

#[test]
fn a_failing_test_shows_its_log_and_report_and_is_never_cached() {
    let p = example();
    p.write("tests/expected.txt", "a different greeting\n");
    for round in ["first", "second"] {
        let (code, steps, err) = p.test(&[]);
        assert_eq!(code, 1, "{round}: {err}");
        let unit = step(&steps, "unit");
        assert_eq!(unit["status"], "failed", "{round}");
        assert_eq!(unit["cached"], false, "{round}");
        // The others passed (and are cached the second time).
        assert_eq!(step(&steps, "lint")["test"], true);
        assert_ne!(step(&steps, "lint")["status"], "failed", "{round}");
        // It ran again: its log is live on stderr both times.
        assert!(err.contains("[unit] FAIL greets"), "{round}: {err}");
        // The error names the step; the details hold the log's tail and
        // the report's failures.
        let error: Value = serde_json::from_str(err.trim_end().lines().last().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {err}"));
        assert_eq!(error["exit_code"], 1);
        assert!(
            error["error"].as_str().unwrap().contains("`unit`"),
            "{error}"
        );
        let details: Vec<&str> = error["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert!(
            details.iter().any(|d| d.starts_with("| FAIL greets")),
            "{details:?}"
        );
        assert!(
            details.contains(
                &"- hello.greets: expected \"a different greeting\", got \"hello from a tested pipeline\""
            ),
            "{details:?}"
        );
        // Only the failed case is listed as a failure.
        let listed = details.iter().filter(|d| d.starts_with("- ")).count();
        assert_eq!(listed, 1, "{details:?}");
    }

    // Text output: a step per line, the failure on stderr, exit 1.
    let out = p.run(&["test"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("failed") && l.ends_with("unit")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l == "passed   lint (cached)"),
        "{stdout}"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error: failed: `unit`"), "{stderr}");
    assert!(stderr.contains("failures in the test report:"), "{stderr}");
}

#[test]
fn a_release_is_refused_until_its_required_tests_passed_on_its_inputs() {
    let p = example();
    // Never run: refused, naming the test, nothing signed.
    let out = p.run(&["release", "--key", "ci"]);
    let line = refused(&out, 1, "test step `lint` has not passed on these inputs");
    assert!(line.contains("release refused"), "{line}");
    let refs = p.run(&["ref", "list", "releases/"]);
    assert!(refs.status.success(), "{}", text(&refs.stderr));
    assert_eq!(
        text(&refs.stdout).trim(),
        "",
        "a refused release was stored"
    );

    // Passed: signed.
    let (code, _, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    let out = p.run(&["release", "--key", "ci"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let refs = p.run(&["ref", "list", "releases/"]);
    assert_eq!(
        text(&refs.stdout).lines().count(),
        1,
        "{}",
        text(&refs.stdout)
    );

    // A change that makes `unit` fail: the earlier pass does not count
    // for the new inputs.
    p.write("src/greeting.txt", "changed\n");
    let (code, _, _) = p.test(&[]);
    assert_eq!(code, 1);
    let out = p.run(&["release", "--key", "ci"]);
    refused(&out, 1, "test step `unit` has not passed on these inputs");

    // Fixed expectations: passes again, released again.
    p.write("tests/expected.txt", "changed\n");
    let (code, _, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    let out = p.run(&["--json", "release", "--key", "ci"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Steps `a` and `b` are independent, `c` needs `a`. Each prints when it
/// starts and, after a pause, when it ends; the live log order shows what
/// ran at the same time.
const PARALLEL: &str = r#"
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
fn test_with_nothing_to_test_and_unknown_steps_are_refused() {
    let p = example();
    p.write("cairn.toml", &PARALLEL.replace("test = true\n", ""));
    let out = p.run(&["test"]);
    refused(&out, 1, "has no test step: mark one with `test = true`");
    let out = p.run(&["test", "nope"]);
    refused(&out, 1, "nope");
    // A required step that is not a test is a recipe error.
    let bad = format!(
        "{PARALLEL}\n[release]\nstep = \"a\"\nrequires = [\"steps.b\"]\n[release.run]\ncommand = [\"a\"]\n"
    );
    p.write("cairn.toml", &bad);
    let out = p.run(&["release", "--key", "ci"]);
    refused(&out, 1, "which is not a test step");
}

/// A matrix test step: one step per value, each run and cached on its own,
/// and its name in `requires` stands for all of them.
const MATRIX: &str = r#"
[service]
name = "matrix"

[inputs.rootfs]
path = "rootfs"

[inputs.src]
path = "src"

[steps.build]
mounts = { "/" = "rootfs", "/src" = "src" }
env = { PATH = "/bin" }
run = ["/bin/sh", "-c", "cp /src/greeting.txt /out/"]

[steps.check]
test = true
matrix = { variant = ["plain", "upper"] }
mounts = { "/" = "rootfs", "/app" = "steps.build" }
env = { PATH = "/bin", VARIANT = "${matrix.variant}" }
run = ["/bin/sh", "-c", "echo checking ${matrix.variant}; test $VARIANT = plain || grep -q HELLO /app/greeting.txt"]

[release]
step = "build"
requires = ["steps.check"]

[release.run]
command = ["greeting.txt"]
"#;

#[test]
fn a_matrix_test_expands_into_one_step_per_value_and_gates_as_a_group() {
    let p = example();
    p.write("cairn.toml", MATRIX);
    let (code, steps, err) = p.test(&[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(step(&steps, "check-plain")["status"], "built");
    assert_eq!(step(&steps, "check-upper")["status"], "failed");
    assert!(err.contains("[check-plain] checking plain"), "{err}");
    assert!(err.contains("[check-upper] checking upper"), "{err}");
    // One of the group failed: the release is refused, naming it.
    let out = p.run(&["release", "--key", "ci"]);
    refused(&out, 1, "test step `check-upper` has not passed");

    p.write("src/greeting.txt", "HELLO\n");
    let (code, steps, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(step(&steps, "check-upper")["status"], "built");
    let out = p.run(&["release", "--key", "ci"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A failing test's report is the step's own output: a symlink to a host
/// file, a symlinked directory on the way, or a FIFO is not read (and
/// does not hang the build); the failure says why no failures are listed.
#[test]
fn a_hostile_report_is_never_followed_out_of_out() {
    let p = example();
    let secret = p.root.join("host-secret.xml");
    std::fs::write(
        &secret,
        r#"<testsuite><testcase name="leaked"><failure message="host secret"/></testcase></testsuite>"#,
    )
    .unwrap();
    let secret_dir = p.root.join("host-dir");
    std::fs::create_dir(&secret_dir).unwrap();
    std::fs::copy(&secret, secret_dir.join("junit.xml")).unwrap();
    let cases = [
        (
            "junit.xml",
            format!("ln -s {} /out/junit.xml", secret.display()),
            "a symlink on the way",
        ),
        (
            "d/junit.xml",
            format!("ln -s {} /out/d", secret_dir.display()),
            "a symlink on the way",
        ),
        (
            "junit.xml",
            "mkfifo /out/junit.xml".to_owned(),
            "not a regular file",
        ),
        ("junit.xml", "true".to_owned(), "the test wrote no report"),
    ];
    for (report, script, why) in cases {
        p.write(
            "cairn.toml",
            &format!(
                r#"[service]
name = "hostile"
[inputs.rootfs]
path = "rootfs"
[steps.t]
test = true
report = "{report}"
mounts = {{ "/" = "rootfs" }}
env = {{ PATH = "/bin" }}
run = ["/bin/sh", "-c", "{script}; exit 1"]
"#
            ),
        );
        let (code, steps, err) = p.test(&[]);
        assert_eq!(code, 1, "{script}: {err}");
        let failures = step(&steps, "t")["failures"].as_array().unwrap().clone();
        assert_eq!(failures.len(), 1, "{script}: {failures:?}");
        let line = failures[0].as_str().unwrap();
        assert!(line.contains(why), "{script}: {line}");
        assert!(!err.contains("host secret"), "{script}: {err}");
    }
}

/// Checks the provenance envelope (argv 1) with the public key line
/// (argv 2) using securesystemslib's DSSE and the in-toto attestation
/// protobuf bindings (unknown fields refused), then prints the predicate's
/// `internalParameters` as JSON: an independent reader of what cairn signs.
const PROVENANCE_CHECKER: &str = r#"
import base64, json, sys
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

raw = json.load(open(sys.argv[1]))
prefix, name, b64 = open(sys.argv[2]).read().strip().split(":")
keyid = raw["signatures"][0]["keyid"]
key = SSlibKey(keyid, "ed25519", "ed25519", {"public": base64.b64decode(b64).hex()})
env = Envelope.from_dict(raw)
assert list(env.verify([key], 1)) == [keyid]
payload = json.loads(env.payload)
st = json_format.Parse(json.dumps(payload), statement_pb2.Statement(), ignore_unknown_fields=False)
Statement.copy_from_pb(st).validate()
prov = json_format.Parse(json.dumps(payload["predicate"]), provenance_pb2.Provenance(),
                         ignore_unknown_fields=False)
print(json.dumps(json_format.MessageToDict(prov.build_definition.internal_parameters)))
"#;

/// `cairn --json release --key ci` in `p`, then the provenance it signed
/// as the Python checkers read it (`internalParameters`), and `cairn
/// --json release show` of it.
fn release_with_provenance(p: &Project) -> (Value, Value) {
    let out = p.run(&["--json", "release", "--key", "ci"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let released: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cat = p.run(&["store", "cat", released["provenance"].as_str().unwrap()]);
    assert!(cat.status.success(), "{}", text(&cat.stderr));
    std::fs::write(p.root.join("provenance.json"), &cat.stdout).unwrap();
    let key = p.run(&["key", "export", "ci"]);
    assert!(key.status.success(), "{}", text(&key.stderr));
    std::fs::write(p.root.join("ci.pub"), &key.stdout).unwrap();
    let checked = Command::new("python3")
        .args(["-c", PROVENANCE_CHECKER])
        .arg(p.root.join("provenance.json"))
        .arg(p.root.join("ci.pub"))
        .output()
        .expect("python3 with securesystemslib and in-toto-attestation (.ci/run)");
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    let internal: Value = serde_json::from_slice(&checked.stdout).unwrap();
    let release = released["release"].as_str().unwrap();
    let shown = p.run(&["--json", "release", "show", release]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let verified = p.run(&["verify", release]);
    assert!(
        verified.status.success(),
        "cairn verify: {}",
        text(&verified.stderr)
    );
    (internal, serde_json::from_slice(&shown.stdout).unwrap())
}

fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64",
        other => panic!("no platform name for {other}"),
    }
}

#[test]
fn the_provenance_lists_the_tests_that_gated_the_release_and_each_steps_platform() {
    let p = example();
    let (code, steps, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    let (internal, shown) = release_with_provenance(&p);

    // Each required test (by name), with the action digest
    // `cairn test` ran and cached, and its result.
    let tests = internal["tests"].as_array().expect("tests listed");
    let names: Vec<&str> = tests.iter().map(|t| t["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["lint", "unit"]);
    for t in tests {
        let ran = step(&steps, t["step"].as_str().unwrap());
        let action = ran["action_digest"].as_str().unwrap();
        assert!(
            t["action"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{action}/")),
            "{t} vs {ran}"
        );
        assert_eq!(t["result"], "passed");
        assert_eq!(t["platform"], host_platform());
        assert_eq!(t["native"], true);
    }
    // The artifact's step (`build`; it mounts no other step) and its
    // platform; the tests are not steps the artifact needs.
    let built = internal["steps"].as_array().expect("steps listed");
    assert_eq!(built.len(), 1, "{built:?}");
    assert_eq!(built[0]["step"], "build");
    let action = step(&steps, "build")["action_digest"].as_str().unwrap();
    assert!(built[0]["action"].as_str().unwrap().starts_with(action));
    assert_eq!(built[0]["platform"], host_platform());

    // `release show --json` says the same.
    let shown_tests: Vec<(&str, &str)> = shown["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["step"].as_str().unwrap(), t["action"].as_str().unwrap()))
        .collect();
    let expected: Vec<(&str, &str)> = ["lint", "unit"]
        .iter()
        .map(|n| (*n, step(&steps, n)["action_digest"].as_str().unwrap()))
        .collect();
    assert_eq!(shown_tests, expected);
    assert_eq!(shown["steps"][0]["platform"], host_platform());
    let plain = p.run(&["release", "show", shown["release"].as_str().unwrap()]);
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let plain = text(&plain.stdout);
    for (name, action) in &expected {
        let line = format!(
            "test      {name} passed action {action} on {}",
            host_platform()
        );
        assert!(plain.contains(&line), "{line:?} not in:\n{plain}");
    }

    // No `requires`: no tests listed, the steps still are.
    let recipe = p.recipe();
    let ungated = recipe.replace("requires = [\"steps.unit\", \"steps.lint\"]\n", "");
    assert_ne!(ungated, recipe, "the example's requires line moved");
    p.write("cairn.toml", &ungated);
    let (internal, shown) = release_with_provenance(&p);
    assert_eq!(internal["tests"], serde_json::json!([]));
    assert_eq!(shown["tests"], serde_json::json!([]));
    assert_eq!(internal["steps"][0]["step"], "build");
    let plain = p.run(&["release", "show", shown["release"].as_str().unwrap()]);
    assert!(text(&plain.stdout).contains("tests     none required"));
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
