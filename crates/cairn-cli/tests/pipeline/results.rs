//! What `cairn test` caches, shows and reads of a report: a pass is
//! cached until its inputs change, a failure never, and is shown with its
//! log and report; a hostile report is never followed out of `/out`.

use serde_json::Value;

use crate::example;
use crate::support::cli::{step, text};

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
