//! Services for tests end to end: `examples/http-hello`'s integration test
//! runs the server the build made as a service inside the test's own
//! sandbox and talks to it over the sandbox's loopback. The real binary,
//! the real sandbox, the real server process. Needs gcc and libc6-dev (the
//! example's C toolchain) and Debian's `busybox-static` (the test's root
//! file system); the tests fail if they are missing, `.ci/run` installs
//! them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");

struct Example {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    project: PathBuf,
}

impl Example {
    /// `examples/http-hello` (and the `c-hello` toolchain script it uses)
    /// copied into a temp dir, its toolchain and test rootfs made.
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for example in ["c-hello", "http-hello"] {
            copy_dir(&Path::new(EXAMPLES).join(example), &root.join(example));
        }
        let project = root.join("http-hello");
        for script in ["make-toolchain.sh", "make-rootfs.sh"] {
            let made = Command::new("sh")
                .arg(project.join(script))
                .env("CAIRN", CAIRN)
                .env("CAIRN_STORE", root.join("store"))
                .output()
                .unwrap();
            assert!(made.status.success(), "{script}: {}", text(&made.stderr));
        }
        Self {
            _tmp: tmp,
            root,
            project,
        }
    }

    /// `cairn --json test ARGS`: its exit code, its steps, stderr.
    fn test(&self, args: &[&str]) -> (i32, Vec<Value>, String) {
        let out: Output = Command::new(CAIRN)
            .arg("--store")
            .arg(self.root.join("store"))
            .args(["--json", "test"])
            .args(args)
            .current_dir(&self.project)
            .env_remove("CAIRN_STORE")
            .output()
            .unwrap();
        let steps: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: stdout {:?}", text(&out.stdout)));
        let steps = steps.as_array().expect("an array of steps").clone();
        (out.status.code().unwrap(), steps, text(&out.stderr))
    }

    fn recipe(&self) -> String {
        std::fs::read_to_string(self.project.join("cairn.toml")).unwrap()
    }

    fn set_recipe(&self, text: &str) {
        std::fs::write(self.project.join("cairn.toml"), text).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "toolchain" || name == "rootfs" {
            continue; // made fresh by the scripts
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn step<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
}

/// The last stderr line as the JSON error `--json` prints.
fn error(stderr: &str) -> Value {
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

#[test]
fn an_integration_test_reaches_its_service_on_loopback_and_nothing_outside() {
    let p = Example::new();
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
    p.set_recipe(&format!("{}{isolated}", p.recipe()));
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
    let p = Example::new();
    let recipe = p.recipe();
    let health = r#"health = { http = "http://127.0.0.1:8080/healthz", interval = "100ms", deadline = "10s" }"#;
    assert!(recipe.contains(health));

    // Probing a port nothing listens on: not ready by the deadline.
    let wrong_port = r#"health = { http = "http://127.0.0.1:8081/healthz", interval = "100ms", deadline = "1s" }"#;
    p.set_recipe(&recipe.replace(health, wrong_port));
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
    p.set_recipe(&bad_listen);
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
    p.set_recipe(&recipe.replace(
        "http://127.0.0.1:8080/healthz",
        "http://localhost:8080/healthz",
    ));
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
