//! Action compilation: deterministic, and sensitive to everything that
//! changes a step's result.

use cairn_digest::Digest;

use super::{parse, HEADER};
use crate::{
    compile_action, CompileError, CompiledAction, Recipe, ResolvedMount, SOURCE_DATE_EPOCH,
};

const STEP: &str = r#"
[inputs.src]
path = "."

[steps.build]
mounts = { "/" = "rootfs", "/src" = { input = "src", writable = true } }
workdir = "/src"
run = ["/bin/sh", "-c", "make"]
env = { PATH = "/bin", CC = "gcc" }
timeout = "10m"
outputs = ["bin/app"]
"#;

fn recipe(step: &str) -> Recipe {
    parse(&format!("{HEADER}{step}"))
}

fn mounts(root_tree: &[u8], writable_src: bool) -> Vec<ResolvedMount> {
    vec![
        ResolvedMount {
            target: "/src".into(),
            tree: Digest::of(b"src tree"),
            writable: writable_src,
        },
        ResolvedMount {
            target: "/".into(),
            tree: Digest::of(root_tree),
            writable: false,
        },
    ]
}

fn compile(r: &Recipe) -> CompiledAction {
    compile_action(
        r,
        "build",
        Digest::of(b"input root"),
        &mounts(b"rootfs", true),
    )
    .unwrap()
}

#[test]
fn command_is_canonical() {
    let c = compile(&recipe(STEP)).command;
    let env: Vec<String> = c
        .environment_variables
        .iter()
        .map(|v| format!("{}={}", v.name, v.value))
        .collect();
    let epoch = format!("SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH}");
    let expected = [
        "CC=gcc",
        "HOME=/homeless",
        "LANG=C.UTF-8",
        "OUT=/out",
        "PATH=/bin",
        &epoch,
        "TZ=UTC",
    ];
    assert_eq!(env, expected);
    assert_eq!(
        (c.working_directory.as_str(), c.output_paths.as_slice()),
        ("src", &["out".to_owned()][..])
    );
    let props: Vec<String> = c
        .platform
        .unwrap()
        .properties
        .iter()
        .map(|p| format!("{}={}", p.name, p.value))
        .collect();
    let mut sorted = props.clone();
    sorted.sort();
    assert_eq!(props, sorted);
    assert!(props.contains(&format!("cairn.sandbox={}", crate::action::SANDBOX)));
    assert!(props.contains(&"cairn.output:bin/app=required".to_owned()));
    assert!(props.contains(&format!(
        "cairn.mount:/src={:#}:rw",
        Digest::of(b"src tree")
    )));
}

#[test]
fn same_recipe_same_digest() {
    let a = compile(&recipe(STEP));
    let b = compile(&recipe(STEP));
    assert_eq!(a.action_digest, b.action_digest);
    assert_eq!(a.action_bytes, b.action_bytes);
    assert_eq!(a.command_digest, Digest::of(&a.command_bytes));
    assert_eq!(a.action_digest, Digest::of(&a.action_bytes));
}

#[test]
fn every_change_changes_the_digest() {
    let base = compile(&recipe(STEP)).action_digest;
    let variants = [
        STEP.replace("\"make\"", "\"make -j2\""),
        STEP.replace("CC = \"gcc\"", "CC = \"clang\""),
        STEP.replace("timeout = \"10m\"", "timeout = \"11m\""),
        STEP.replace("workdir = \"/src\"", "workdir = \"/\""),
        STEP.replace("outputs = [\"bin/app\"]", "outputs = [\"bin/app2\"]"),
        STEP.replace("outputs", "limits = { memory = \"1GiB\" }\noutputs"),
    ];
    for v in &variants {
        assert_ne!(compile(&recipe(v)).action_digest, base, "{v}");
    }
    let r = recipe(STEP);
    let other_root = compile_action(
        &r,
        "build",
        Digest::of(b"other root"),
        &mounts(b"rootfs", true),
    );
    assert_ne!(other_root.unwrap().action_digest, base);
    let other_mount = compile_action(
        &r,
        "build",
        Digest::of(b"input root"),
        &mounts(b"rootfs2", true),
    );
    assert_ne!(other_mount.unwrap().action_digest, base);
}

#[test]
fn mounts_must_match_the_recipe() {
    let r = recipe(STEP);
    let root = Digest::of(b"input root");
    let err = compile_action(&r, "build", root, &mounts(b"rootfs", false)).unwrap_err();
    assert!(matches!(err, CompileError::MountMismatch { .. }), "{err}");
    let err = compile_action(&r, "build", root, &mounts(b"rootfs", true)[..1]).unwrap_err();
    assert!(matches!(err, CompileError::MountMismatch { .. }), "{err}");
    let err = compile_action(&r, "nope", root, &[]).unwrap_err();
    assert_eq!(err, CompileError::UnknownStep("nope".into()));
}
