//! Pipelines: test steps, platforms, emulators, services, matrices and
//! `[release] requires`.

use cairn_digest::Digest;

use super::{error_of, parse, HEADER};
use crate::{compile_action, MountSource, Platform, Probe, Recipe, ResolvedMount, EMULATOR_MOUNT};

const PIPELINE: &str = r#"
[inputs.src]
path = "."

[inputs.qemu]
path = "qemu"

[steps.build]
matrix = { arch = ["amd64", "arm64"] }
mounts = { "/" = "rootfs", "/src" = "src" }
run = ["/bin/sh", "-c", "GOARCH=${matrix.arch} make"]
env = { ARCH = "${matrix.arch}" }
outputs = ["app-${matrix.arch}"]

[steps.smoke]
matrix = { arch = ["amd64", "arm64"] }
test = true
report = "junit.xml"
platform = "linux/${matrix.arch}"
emulator = "qemu"
mounts = { "/" = "rootfs" }
run = ["/services/api/check"]

[steps.smoke.services.api]
step = "steps.build-${matrix.arch}"
run = ["/services/api/app-${matrix.arch}", "-listen", "127.0.0.1:8080"]
health = { http = "http://127.0.0.1:8080/healthz", deadline = "5s" }

[release]
step = "build-amd64"
requires = ["steps.smoke"]

[release.run]
command = ["app-amd64"]
"#;

fn pipeline() -> Recipe {
    parse(&format!("{HEADER}{PIPELINE}"))
}

#[test]
fn a_matrix_expands_into_one_named_step_per_value() {
    let r = pipeline();
    let names: Vec<&str> = r.steps.keys().map(|n| n.as_str()).collect();
    assert_eq!(
        names,
        ["build-amd64", "build-arm64", "smoke-amd64", "smoke-arm64"]
    );
    let arm = &r.steps["build-arm64"];
    assert_eq!(arm.run[2], "GOARCH=arm64 make");
    assert_eq!(arm.env["ARCH"], "arm64");
    assert_eq!(arm.outputs, ["app-arm64"]);
    let smoke = &r.steps["smoke-arm64"];
    assert_eq!(smoke.platform, Some(Platform::LinuxArm64));
    assert_eq!(r.steps["smoke-amd64"].platform, Some(Platform::LinuxAmd64));
    assert!(smoke.test);
    assert_eq!(smoke.report.as_deref(), Some("junit.xml"));
}

#[test]
fn a_service_mounts_its_artifact_and_a_test_depends_on_it() {
    let r = pipeline();
    let smoke = &r.steps["smoke-arm64"];
    let api = &smoke.services["api"];
    assert_eq!(api.step.as_str(), "build-arm64");
    assert_eq!(api.run[0], "/services/api/app-arm64");
    assert!(matches!(api.health.as_ref().unwrap().probe, Probe::Http(_)));
    assert_eq!(
        smoke.mounts["/services/api"].source,
        MountSource::Step(crate::Name::new("build-arm64").unwrap())
    );
    assert_eq!(
        smoke.mounts[EMULATOR_MOUNT].source,
        MountSource::Input(crate::Name::new("qemu").unwrap())
    );
    let waves = r.plan("smoke-arm64").unwrap();
    assert_eq!(waves.len(), 2);
    assert_eq!(waves[0][0].as_str(), "build-arm64");
}

#[test]
fn requires_names_tests_and_a_matrix_name_stands_for_its_steps() {
    let r = pipeline();
    let release = r.release.unwrap();
    let req: Vec<&str> = release.requires.iter().map(|n| n.as_str()).collect();
    assert_eq!(req, ["smoke-amd64", "smoke-arm64"]);
    let e = error_of(&format!(
        "{HEADER}{}",
        PIPELINE.replace(
            r#"requires = ["steps.smoke"]"#,
            r#"requires = ["steps.build-arm64"]"#
        )
    ));
    assert!(e.contains("not a test step"), "{e}");
    let e = error_of(&format!(
        "{HEADER}{}",
        PIPELINE.replace(
            r#"requires = ["steps.smoke"]"#,
            r#"requires = ["steps.nope"]"#
        )
    ));
    assert!(e.contains("undefined step `nope`"), "{e}");
}

#[test]
fn matrix_mistakes_are_located_errors() {
    let bad = [
        (
            r#"["amd64", "arm64"]"#,
            r#"["amd64", "Arm/64"]"#,
            "cannot be part of a step name",
        ),
        (
            "${matrix.arch} make",
            "${matrix.os} make",
            "does not define",
        ),
    ];
    for (from, to, want) in bad {
        let e = error_of(&format!("{HEADER}{}", PIPELINE.replacen(from, to, 1)));
        assert!(e.contains(want), "{e}");
        assert!(e.starts_with("cairn.toml:"), "{e}");
    }
    let e = error_of(&format!(
        "{HEADER}[steps.a]\nrun = [\"x-${{matrix.arch}}\"]\n"
    ));
    assert!(e.contains("has no `matrix`"), "{e}");
    let e = error_of(&format!(
        "{HEADER}[steps.a]\nrun = [\"x\"]\nmatrix = {{ v = [\"b\"] }}\n[steps.a-b]\nrun = [\"y\"]\n"
    ));
    assert!(e.contains("also declared"), "{e}");
}

#[test]
fn platform_service_and_emulator_mistakes() {
    let e = error_of(&format!(
        "{HEADER}{}",
        PIPELINE.replace("linux/${matrix.arch}", "linux/sparc")
    ));
    assert!(e.contains("unknown platform \"linux/sparc\""), "{e}");
    let e = error_of(&format!(
        "{HEADER}{}",
        PIPELINE.replace("http://127.0.0.1:8080/healthz", "/healthz")
    ));
    assert!(e.contains("holds no named sockets"), "{e}");
    let e = error_of(&format!(
        "{HEADER}{}",
        PIPELINE.replace(r#"emulator = "qemu""#, r#"emulator = "nope""#)
    ));
    assert!(e.contains("undefined input `nope`"), "{e}");
    let e = error_of(&format!(
        "{HEADER}[steps.a]\nrun = [\"x\"]\nmounts = {{ \"/.cairn/x\" = \"rootfs\" }}\n"
    ));
    assert!(e.contains("/.cairn"), "{e}");
    let e = error_of(&format!(
        "{HEADER}[steps.a]\nrun = [\"x\"]\nreport = \"r.xml\"\n"
    ));
    assert!(e.contains("only for test steps"), "{e}");
}

fn digest_of(r: &Recipe, step: &str) -> Digest {
    let mounts: Vec<ResolvedMount> = r.steps[step]
        .mounts
        .iter()
        .map(|(target, m)| ResolvedMount {
            target: target.clone(),
            tree: Digest::of(target.as_bytes()),
            writable: m.writable,
        })
        .collect();
    compile_action(r, step, Digest::of(b"root"), &mounts)
        .unwrap()
        .action_digest
}

#[test]
fn platform_test_and_services_are_part_of_the_action() {
    let r = pipeline();
    let base = digest_of(&r, "smoke-arm64");
    assert_ne!(base, digest_of(&r, "smoke-amd64"));
    let text = format!("{HEADER}{PIPELINE}");
    for (from, to) in [
        ("linux/${matrix.arch}", "linux/riscv64"),
        (r#"report = "junit.xml""#, r#"report = "other.xml""#),
        (r#"deadline = "5s""#, r#"deadline = "6s""#),
        ("\"-listen\"", "\"-l\""),
    ] {
        let changed = parse(&text.replacen(from, to, 1));
        assert_ne!(digest_of(&changed, "smoke-arm64"), base, "{from} -> {to}");
    }
}

#[test]
fn steps_without_pipeline_keys_keep_their_action() {
    // No platform, test or service property is added to a plain step.
    let r = pipeline();
    let mounts: Vec<ResolvedMount> = vec![
        ResolvedMount {
            target: "/".into(),
            tree: Digest::of(b"r"),
            writable: false,
        },
        ResolvedMount {
            target: "/src".into(),
            tree: Digest::of(b"s"),
            writable: false,
        },
    ];
    let c = compile_action(&r, "build-amd64", Digest::of(b"root"), &mounts).unwrap();
    let platform = c.action.platform.unwrap();
    let names: Vec<&str> = platform
        .properties
        .iter()
        .map(|p| p.name.as_str())
        .filter(|n| {
            n.starts_with("cairn.platform")
                || n.starts_with("cairn.test")
                || n.starts_with("cairn.service")
        })
        .collect();
    assert!(names.is_empty(), "{names:?}");
}
