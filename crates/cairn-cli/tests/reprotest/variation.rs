//! The variation machinery: which examples are built and how ([`SPECS`]),
//! one build of an example in given surroundings ([`build`]), and the
//! comparison of two builds' artifacts, byte for byte ([`difference`]).

use std::path::Path;

use serde_json::Value;

use crate::support::cli::Machine;
use crate::support::project::copy_example;
use crate::support::surroundings::{Order, Surroundings, PLAIN, VARIED};
use crate::support::tree_diff;

/// How an example is built.
#[derive(Clone, Copy)]
pub enum Build {
    /// `cairn build`: the release step.
    Release,
    /// `cairn --json test`: every test and the steps they need; the
    /// artifacts are the steps that are not tests.
    Tests,
}

/// One example as this test builds it.
pub struct Spec {
    /// The directory under `examples/`.
    pub example: &'static str,
    /// Examples whose scripts its own scripts run (copied beside it).
    pub siblings: &'static [&'static str],
    /// Its setup scripts, in order.
    pub setup: &'static [&'static str],
    /// Whether its scripts take Zig from the `ziglang` wheel.
    pub zig: bool,
    pub build: Build,
}

pub const SPECS: [Spec; 6] = [
    Spec {
        example: "busybox-hello",
        siblings: &[],
        setup: &["make-rootfs.sh"],
        zig: false,
        build: Build::Release,
    },
    Spec {
        example: "c-hello",
        siblings: &[],
        setup: &["make-toolchain.sh"],
        zig: false,
        build: Build::Release,
    },
    Spec {
        example: "go-hello",
        siblings: &[],
        setup: &["make-trees.sh"],
        zig: false,
        build: Build::Tests,
    },
    Spec {
        example: "http-hello",
        siblings: &["c-hello"],
        setup: &["make-toolchain.sh", "make-rootfs.sh"],
        zig: false,
        build: Build::Release,
    },
    Spec {
        example: "pipeline",
        siblings: &[],
        setup: &["make-rootfs.sh"],
        zig: false,
        build: Build::Release,
    },
    Spec {
        example: "zig-hello",
        siblings: &[],
        setup: &["make-trees.sh"],
        zig: true,
        build: Build::Tests,
    },
];

pub fn spec(example: &str) -> &'static Spec {
    SPECS.iter().find(|s| s.example == example).unwrap()
}

/// An artifact: the step that made it, its output tree, its action.
#[derive(Debug)]
pub struct Artifact {
    pub step: String,
    pub output: String,
    pub action: Option<String>,
}

/// One build: where it ran and what it made.
pub struct Built {
    pub machine: Machine,
    pub artifacts: Vec<Artifact>,
}

/// Builds `spec` (with `recipe` instead of its own if given) under
/// `root` in surroundings `s`: the project copied (in `s`'s order, files
/// given `s`'s time), its setup scripts run, then built, all in `s`.
pub fn build(spec: &Spec, recipe: Option<&str>, root: &Path, s: Surroundings) -> Built {
    let (dir, store) = match s.order {
        Order::Sorted => (root.join("proj"), root.join("store")),
        Order::Reversed => (
            root.join("elsewhere/deeper/renamed"),
            root.join("other-store"),
        ),
    };
    let time = Some(s.file_time());
    copy_example(spec.example, &dir, s.order, time);
    for sibling in spec.siblings {
        copy_example(sibling, &dir.parent().unwrap().join(sibling), s.order, time);
    }
    if let Some(recipe) = recipe {
        std::fs::write(dir.join("cairn.toml"), recipe).unwrap();
    }
    let machine = Machine {
        store: Some(store.to_str().unwrap().to_owned()),
        cache: Some(root.join("cache")),
        dir: Some(dir.clone()),
        surroundings: Some(s),
        home: Some(root.join("home")),
        ..Machine::default()
    };
    // The wheel is found by the test's own Python (the surroundings'
    // environment has none of its settings) and given to both builds.
    let zig = spec.zig.then(ziglang);
    let env: Vec<(&str, &str)> = zig.iter().map(|z| ("ZIGLANG", z.as_str())).collect();
    for script in spec.setup {
        machine.script_with(&dir.join(script), &env);
    }
    let artifacts = match spec.build {
        Build::Release => vec![Artifact {
            step: "(release)".into(),
            output: machine.ok(&["build"]),
            action: None,
        }],
        Build::Tests => tested(spec, &machine),
    };
    Built { machine, artifacts }
}

/// Where the `ziglang` wheel is (its `ziglang/` directory).
fn ziglang() -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, ziglang; print(os.path.dirname(ziglang.__file__))",
        ])
        .output()
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "the ziglang wheel is missing: pip install ziglang"
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `cairn --json test`, which must pass with every step run (the store
/// is clean): the steps that are not tests.
fn tested(spec: &Spec, machine: &Machine) -> Vec<Artifact> {
    let (code, steps, err) = machine.test(&[]);
    assert_eq!(code, 0, "{}: {err}", spec.example);
    for s in &steps {
        assert_eq!(s["status"], "built", "{}: {s}", spec.example);
    }
    let field = |s: &Value, name: &str| s[name].as_str().unwrap().to_owned();
    // Listed as they finished: by name, to compare.
    let mut artifacts: Vec<Artifact> = steps
        .iter()
        .filter(|s| s["test"] == false)
        .map(|s| Artifact {
            step: field(s, "step"),
            output: field(s, "output"),
            action: Some(field(s, "action_digest")),
        })
        .collect();
    artifacts.sort_by(|x, y| x.step.cmp(&y.step));
    artifacts
}

/// The output `digest` of `machine`'s store, checked out into `into`
/// (plainly: the checkout itself is not under test).
pub fn checkout(machine: &Machine, digest: &str, into: &Path) {
    let plain = Machine {
        store: machine.store.clone(),
        ..Machine::default()
    };
    plain.ok(&["store", "checkout", digest, into.to_str().unwrap()]);
}

/// How `b`'s artifacts differ from `a`'s (both builds of `example`),
/// first by their bytes, checked out under `scratch`: the example, the
/// step, the file and the first differing bytes; `None` when every
/// artifact is identical (its bytes, its digest and its action).
pub fn difference(example: &str, a: &Built, b: &Built, scratch: &Path) -> Option<String> {
    let steps =
        |built: &Built| -> Vec<String> { built.artifacts.iter().map(|a| a.step.clone()).collect() };
    if steps(a) != steps(b) {
        return Some(format!(
            "{example}: other steps were built: {:?} and {:?}",
            steps(a),
            steps(b)
        ));
    }
    for (x, y) in a.artifacts.iter().zip(&b.artifacts) {
        let (in_a, in_b) = (
            scratch.join(format!("out-a/{}", x.step)),
            scratch.join(format!("out-b/{}", y.step)),
        );
        checkout(&a.machine, &x.output, &in_a);
        checkout(&b.machine, &y.output, &in_b);
        let step = &x.step;
        if let Some(d) = tree_diff::first_difference(&in_a, &in_b) {
            return Some(format!(
                "{example}: step {step}: the varied build differs: {d}"
            ));
        }
        if x.output != y.output {
            return Some(format!(
                "{example}: step {step}: outputs {} and {}",
                x.output, y.output
            ));
        }
        if x.action != y.action {
            return Some(format!(
                "{example}: step {step}: actions {:?} and {:?}",
                x.action, y.action
            ));
        }
    }
    None
}

/// Builds `example` plainly and varied; fails, naming the example, the
/// step, the file and the first differing bytes, unless every artifact
/// is identical.
pub fn identical_under_variation(example: &str) {
    let spec = spec(example);
    let tmp = tempfile::tempdir().unwrap();
    let a = build(spec, None, &tmp.path().join("a"), PLAIN);
    let b = build(spec, None, &tmp.path().join("b"), VARIED);
    assert!(!a.artifacts.is_empty(), "{example}: nothing was built");
    for artifact in a.artifacts.iter().chain(&b.artifacts) {
        assert!(
            artifact.output.starts_with("sha256:"),
            "{example}: {artifact:?}"
        );
    }
    if let Some(difference) = difference(example, &a, &b, tmp.path()) {
        panic!("{difference}");
    }
}
