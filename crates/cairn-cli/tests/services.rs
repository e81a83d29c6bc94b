//! Services for tests end to end: `examples/http-hello`'s integration test
//! runs the server the build made as a service inside the test's own
//! sandbox and talks to it over the sandbox's loopback. The real binary,
//! the real sandbox, the real server process. Needs gcc and libc6-dev (the
//! example's C toolchain) and Debian's `busybox-static` (the test's root
//! file system); the tests fail if they are missing, `.ci/run` installs
//! them.

mod support;

use std::net::TcpListener;

use serde_json::Value;
use support::cli::step;
use support::project::Project;

/// `examples/http-hello` (and `c-hello`, whose toolchain script it runs)
/// copied into a temp dir, its toolchain and test rootfs made.
fn example() -> Project {
    let p = Project::example("http-hello");
    p.copy_sibling("c-hello");
    p.setup("make-toolchain.sh");
    p.setup("make-rootfs.sh");
    p
}

/// The last stderr line as the JSON error `--json` prints.
fn error(stderr: &str) -> Value {
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

#[test]
fn an_integration_test_reaches_its_service_on_loopback_and_nothing_outside() {
    let p = example();
    let (code, steps, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(step(&steps, "integration")["status"], "built");
    assert_eq!(step(&steps, "build")["status"], "built");
    // The real server answered, and its own output is in the test's log.
    assert!(
        err.contains("[integration] ok   greets: hello from http-hello"),
        "{err}"
    );
    assert!(
        err.contains("[integration] ok   unknown_path_is_404"),
        "{err}"
    );
    assert!(err.contains("[integration] http-hello"), "{err}");
    // A pass is cached, service and all.
    let (code, again, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(step(&again, "integration")["status"], "cached");

    // From the test's sandbox the host's loopback is out of reach, and
    // the service is reachable only from inside.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let port = host.local_addr().unwrap().port();
    let isolated = format!(
        r#"
[steps.isolated]
test = true
mounts = {{ "/" = "rootfs" }}
env = {{ PATH = "/bin" }}
run = ["/bin/sh", "-c", "wget -q -O - http://127.0.0.1:8080/ || exit 1; if wget -q -O - http://127.0.0.1:{port}/; then echo reached the host; exit 1; fi; echo host unreachable"]

[steps.isolated.services.hello]
step = "steps.build"
run = ["/services/hello/http-hello"]
env = {{ HELLO_LISTEN = "127.0.0.1:8080" }}
health = {{ tcp = "127.0.0.1:8080", interval = "100ms", deadline = "10s" }}
"#
    );
    p.write("cairn.toml", &format!("{}{isolated}", p.recipe()));
    let (code, steps, err) = p.test(&["isolated"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(step(&steps, "isolated")["status"], "built");
    assert!(err.contains("[isolated] host unreachable"), "{err}");
    assert!(
        host.accept().is_err(),
        "the host's listener was reached from the sandbox"
    );
}

#[test]
fn a_service_that_is_never_ready_fails_its_test_every_time() {
    let p = example();
    let recipe = p.recipe();
    let health = r#"health = { http = "http://127.0.0.1:8080/healthz", interval = "100ms", deadline = "10s" }"#;
    assert!(recipe.contains(health));

    // Probing a port nothing listens on: not ready by the deadline.
    let wrong_port = r#"health = { http = "http://127.0.0.1:8081/healthz", interval = "100ms", deadline = "1s" }"#;
    p.write("cairn.toml", &recipe.replace(health, wrong_port));
    for round in ["first", "second"] {
        let (code, steps, err) = p.test(&[]);
        assert_eq!(code, 1, "{round}: {err}");
        let integration = step(&steps, "integration");
        assert_eq!(integration["status"], "failed", "{round}");
        let message = integration["error"].as_str().unwrap();
        assert!(
            message.contains("service `hello` was not ready by its health check's deadline"),
            "{round}: {message}"
        );
        // The service ran (its output is in the log); the test never did.
        assert!(err.contains("[integration] http-hello"), "{round}: {err}");
        assert!(!err.contains("greets"), "{round}: the test ran: {err}");
        assert_eq!(error(&err)["exit_code"], 1);
    }

    // A service that exits at once: named, with its exit code.
    let bad_listen = recipe.replace(
        r#"HELLO_LISTEN = "127.0.0.1:8080""#,
        r#"HELLO_LISTEN = "not-an-address""#,
    );
    p.write("cairn.toml", &bad_listen);
    let (code, steps, err) = p.test(&[]);
    assert_eq!(code, 1, "{err}");
    let message = step(&steps, "integration")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("service `hello` exited with code 2 before it was ready"),
        "{message}"
    );
    assert!(err.contains("HELLO_LISTEN must be IP:PORT"), "{err}");

    // A probe the sandbox cannot run (no resolver): refused before it runs.
    p.write(
        "cairn.toml",
        &recipe.replace(
            "http://127.0.0.1:8080/healthz",
            "http://localhost:8080/healthz",
        ),
    );
    let (code, steps, _) = p.test(&[]);
    assert_eq!(code, 1);
    let message = step(&steps, "integration")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("service `hello`") && message.contains("no resolver"),
        "{message}"
    );
}
