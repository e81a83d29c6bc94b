//! Each kind of recipe error, with its line, column and message.

use super::{error_of, HEADER};

fn with_header(rest: &str) -> String {
    error_of(&format!("{HEADER}{rest}"))
}

const STEP_TYPE_ERROR: &str = r#"
[steps.build]
run = "make"
"#;

const UNKNOWN_KEY: &str = r#"
[steps.build]
run = ["make"]
mountz = { "/" = "rootfs" }
"#;

const CYCLE: &str = r#"
[steps.a]
mounts = { "/" = "rootfs", "/b" = "steps.b" }
run = ["x"]

[steps.b]
mounts = { "/c" = "steps.c" }
run = ["x"]

[steps.c]
mounts = { "/a" = "steps.a" }
run = ["x"]
"#;

const UNDEFINED_INPUT: &str = r#"
[steps.build]
mounts = { "/" = "rootfs", "/src" = "srcc" }
run = ["make"]
"#;

const UNDEFINED_STEP: &str = r#"
[steps.build]
mounts = { "/" = "steps.nope" }
run = ["make"]
"#;

const TWO_MOUNTS_ONE_PATH: &str = r#"
[steps.build]
mounts = { "/src" = "rootfs", "/src/" = "rootfs" }
run = ["make"]
"#;

const DUPLICATE_KEY: &str = r#"
[steps.build]
mounts = { "/src" = "rootfs", "/src" = "rootfs" }
run = ["make"]
"#;

const RELATIVE_MOUNT: &str = r#"
[steps.build]
mounts = { "src" = "rootfs" }
run = ["make"]
"#;

const DOTDOT_MOUNT: &str = r#"
[steps.build]
mounts = { "/src/../etc" = "rootfs" }
run = ["make"]
"#;

const RESERVED_MOUNT: &str = r#"
[steps.build]
mounts = { "/tmp/cache" = "rootfs" }
run = ["make"]
"#;

const BAD_STEP_NAME: &str = r#"
[steps.Build]
run = ["make"]
"#;

const EMPTY_RUN: &str = r#"
[steps.build]
run = []
"#;

const FIXED_ENV: &str = r#"
[steps.build]
run = ["make"]
env = { HOME = "/root" }
"#;

const BAD_TIMEOUT: &str = r#"
[steps.build]
run = ["make"]
timeout = "ten minutes"
"#;

const BAD_HEALTH_SOCKET: &str = r#"
[steps.build]
run = ["make"]

[release]
step = "build"
[release.run]
command = ["bin/app"]
sockets = ["http"]
health = { http = "/healthz", socket = "htp" }
"#;

const RELEASE_UNKNOWN_STEP: &str = r#"
[release]
step = "biuld"
[release.run]
command = ["bin/app"]
"#;

const INPUT_TWO_FORMS: &str = r#"
[inputs.src]
path = "."
tree = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
"#;

const BAD_DIGEST: &str = r#"
[inputs.vendor]
url = "https://example.org/v.tar"
digest = "md5:abc"
"#;

const ZERO_UNAVAILABLE: &str = r#"
[deploy]
max_unavailable = 0
"#;

const PERCENT_OVER: &str = r#"
[deploy]
max_unavailable = "150%"
"#;

const NOT_A_PERCENT: &str = r#"
[deploy]
max_unavailable = "ten"
"#;

const ZERO_CANARY: &str = r#"
[deploy]
strategy = "canary"
canary = { count = "0%" }
"#;

const BAD_ON_FAILURE: &str = r#"
[deploy]
on_failure = "pray"
"#;

const BACKWARD_FREEZE: &str = r#"
[deploy]
gates = [{ freeze = { from = 2026-01-05T00:00:00Z, until = 2026-01-05T01:00:00+02:00 } }]
"#;

const BAD_STRATEGY: &str = r#"
[deploy]
strategy = "yolo"
"#;

#[test]
fn type_error() {
    assert_eq!(
        with_header(STEP_TYPE_ERROR),
        "cairn.toml:8:7: invalid type: string \"make\", expected a sequence"
    );
}

#[test]
fn unknown_key() {
    let e = with_header(UNKNOWN_KEY);
    assert!(
        e.starts_with(
            "cairn.toml:9:1: unknown field `mountz`, expected one of `mounts`, `workdir`"
        ),
        "{e}"
    );
}

#[test]
fn cycle_is_named() {
    assert_eq!(
        with_header(CYCLE),
        "cairn.toml:7:1: steps form a cycle: a -> b -> c -> a"
    );
}

#[test]
fn undefined_input() {
    assert_eq!(
        with_header(UNDEFINED_INPUT),
        "cairn.toml:8:37: step `build` mounts undefined input `srcc`"
    );
}

#[test]
fn undefined_step() {
    assert_eq!(
        with_header(UNDEFINED_STEP),
        "cairn.toml:8:18: step `build` refers to undefined step `nope`"
    );
}

#[test]
fn two_mounts_at_one_path() {
    assert_eq!(
        with_header(TWO_MOUNTS_ONE_PATH),
        "cairn.toml:8:41: step `build` mounts two things at /src"
    );
    let e = with_header(DUPLICATE_KEY);
    assert!(e.starts_with("cairn.toml:8:31: duplicate key"), "{e}");
}

#[test]
fn bad_mount_paths() {
    let e = with_header(RELATIVE_MOUNT);
    assert_eq!(
        e,
        "cairn.toml:8:20: mount path \"src\" must be absolute (start with /)"
    );
    let e = with_header(DOTDOT_MOUNT);
    assert!(
        e.starts_with("cairn.toml:8:28: mount path \"/src/../etc\" contains \"..\""),
        "{e}"
    );
    let e = with_header(RESERVED_MOUNT);
    assert_eq!(
        e,
        "cairn.toml:8:27: cannot mount at /tmp/cache: /tmp is provided by the sandbox"
    );
}

#[test]
fn bad_names_and_values() {
    let e = with_header(BAD_STEP_NAME);
    assert_eq!(
        e,
        "cairn.toml:7:1: invalid step name \"Build\": expected [a-z0-9][a-z0-9_-]*"
    );
    let e = with_header(EMPTY_RUN);
    assert_eq!(e, "cairn.toml:8:7: step `build`: `run` must not be empty");
    let e = with_header(FIXED_ENV);
    assert_eq!(
        e,
        "cairn.toml:9:7: environment variable HOME is fixed by cairn and cannot be set"
    );
    let e = with_header(BAD_TIMEOUT);
    assert!(
        e.starts_with("cairn.toml:9:11: invalid duration \"ten minutes\""),
        "{e}"
    );
}

#[test]
fn bad_health_socket() {
    assert_eq!(
        with_header(BAD_HEALTH_SOCKET),
        "cairn.toml:15:40: health check uses socket `htp`, which is not one of the release's sockets [\"http\"]"
    );
}

#[test]
fn zero_health_threshold() {
    let text = BAD_HEALTH_SOCKET.replace("socket = \"htp\"", "socket = \"http\", threshold = 0");
    let e = with_header(&text);
    assert!(
        e.starts_with("cairn.toml:15:") && e.ends_with("`threshold` must be at least 1"),
        "{e}"
    );
}

#[test]
fn release_of_unknown_step() {
    assert_eq!(
        with_header(RELEASE_UNKNOWN_STEP),
        "cairn.toml:8:8: [release] refers to undefined step `biuld`"
    );
}

#[test]
fn input_forms() {
    let e = with_header(INPUT_TWO_FORMS);
    assert_eq!(
        e,
        "cairn.toml:7:1: input `src` must have exactly one of `path`, `tree`, `url` or `oci`"
    );
    let e = with_header(BAD_DIGEST);
    assert!(e.starts_with("cairn.toml:9:10: digest \"md5:abc\""), "{e}");
}

#[test]
fn deploy_errors() {
    let e = with_header(ZERO_UNAVAILABLE);
    assert_eq!(e, "cairn.toml:8:19: `max_unavailable` must be at least 1");
    let e = with_header(PERCENT_OVER);
    assert_eq!(
        e,
        "cairn.toml:8:19: `max_unavailable` of 150% is out of range; a percentage is 1% to 100%"
    );
    let e = with_header(NOT_A_PERCENT);
    assert!(
        e.starts_with("cairn.toml:8:19: \"ten\" is not a percentage"),
        "{e}"
    );
    let e = with_header(ZERO_CANARY);
    assert!(
        e.starts_with("cairn.toml:9:20: `canary count` of 0%"),
        "{e}"
    );
    let e = with_header(BAD_ON_FAILURE);
    assert!(
        e.starts_with("cairn.toml:8:14: unknown variant `pray`, expected `halt` or `rollback`"),
        "{e}"
    );
    let e = with_header(BACKWARD_FREEZE);
    assert!(
        e.starts_with(
            "cairn.toml:8:10: freeze window ends (2026-01-05T01:00:00+02:00) before it starts"
        ),
        "{e}"
    );
    let e = with_header(BAD_STRATEGY);
    assert!(
        e.starts_with("cairn.toml:8:12: unknown variant `yolo`, expected one of"),
        "{e}"
    );
}

#[test]
fn syntax_error_has_location() {
    let e = error_of("[service]\nname = \"x\"\n[steps.a\n");
    assert!(e.starts_with("cairn.toml:3:"), "{e}");
}

#[test]
fn oci_inputs_must_be_pinned() {
    let tag = with_header("[inputs.base]\noci = \"127.0.0.1:5000/debian:bookworm\"\n");
    assert!(
        tag.contains("input `base`: image \"127.0.0.1:5000/debian:bookworm\" is not pinned"),
        "{tag}"
    );
    let short = with_header("[inputs.base]\noci = \"127.0.0.1:5000/debian@sha256:abc\"\n");
    assert!(short.contains("is not sha256:<64 hex>"), "{short}");
}
