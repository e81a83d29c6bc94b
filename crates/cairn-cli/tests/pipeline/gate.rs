//! What a release requires: the tests it names, passed on its inputs (a
//! matrix test's name standing for all of its steps); a pipeline with
//! nothing to test, or an unknown step, is refused.

use crate::example;
use crate::jobs::PARALLEL;
use crate::support::cli::{step, text};
use crate::support::refused;

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
