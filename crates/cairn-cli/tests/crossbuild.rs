//! Cross toolchains as pinned trees, end to end with the real examples:
//! `examples/go-hello` (Debian's Go) and `examples/zig-hello` (`zig cc`
//! from the `ziglang` wheel) are each copied into a project with its own
//! store; the example's `make-trees.sh` makes the toolchain and
//! `qemu-aarch64-static` into store trees and pins them; `cairn test`
//! builds the program for amd64 and arm64 and runs each binary on its own
//! platform, the arm64 one under the pinned QEMU; go-hello also runs its
//! package's own tests with `go test` (which executes a binary it builds
//! in the sandbox's `/tmp`), natively and for arm64 through `-exec` QEMU.
//! That a second clean build elsewhere, in varied surroundings, gives the
//! same bytes (and passes the same tests) is `reprotest`'s to check,
//! for every example. The tests fail (never skip) when `golang-go`, the
//! `ziglang` wheel or `qemu-user-static` is missing; `.ci/run` installs
//! them.

mod support;

use std::path::Path;
use std::process::Command;

use support::cli::{step, text};
use support::project::Project;

const QEMU: &str = "/usr/bin/qemu-aarch64-static";

/// What differs between the two examples.
struct Spec {
    /// The directory under `examples/`.
    example: &'static str,
    /// The toolchain's input (besides `qemu`).
    toolchain: &'static str,
    /// The build steps for amd64 and arm64.
    builds: [&'static str; 2],
    /// The module or source path the binaries name.
    names: &'static [u8],
    /// The environment variable that makes the test fail.
    fail: &'static str,
    /// The steps running the program's own unit tests (natively, and
    /// cross-built for arm64 under QEMU), and a line their logs show when
    /// they pass.
    units: &'static [(&'static str, &'static str)],
}

const GO_HELLO: Spec = Spec {
    example: "go-hello",
    toolchain: "go",
    builds: ["build-amd64", "build-arm64"],
    names: b"example.com/go-hello",
    fail: "GO_HELLO_FAIL",
    units: &[
        ("unit", "--- PASS: TestGreetingNamesItsPlatform"),
        ("unit-arm64", "--- PASS: TestGreetingNamesItsPlatform"),
    ],
};

const ZIG_HELLO: Spec = Spec {
    example: "zig-hello",
    toolchain: "zig",
    builds: ["build-x86_64", "build-aarch64"],
    names: b"hello from zig-hello on linux/",
    fail: "ZIG_HELLO_FAIL",
    units: &[],
};

/// Fails, naming the package to install, unless `spec`'s toolchain and
/// QEMU are on this machine.
fn require(spec: &Spec) {
    assert!(
        Path::new(QEMU).exists(),
        "{QEMU} is missing: apt-get install qemu-user-static"
    );
    match spec.toolchain {
        "go" => assert!(
            Path::new("/usr/bin/go").exists(),
            "/usr/bin/go is missing: apt-get install golang-go"
        ),
        _ => {
            let found = Command::new("python3")
                .args(["-c", "import ziglang"])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(found, "the ziglang wheel is missing: pip install ziglang");
        }
    }
}

/// `spec`'s example copied into a project of its own, its trees made and
/// pinned in its store.
fn example(spec: &Spec) -> Project {
    require(spec);
    let p = Project::example(spec.example);
    let printed = p.setup("make-trees.sh");
    for input in [spec.toolchain, "qemu"] {
        let line = printed
            .lines()
            .find(|l| l.starts_with(&format!("{input}: sha256:")))
            .unwrap_or_else(|| panic!("no digest for {input}: {printed}"));
        let digest = line.split_whitespace().nth(1).unwrap();
        assert!(
            p.recipe().contains(&format!("tree = \"{digest}\"")),
            "{input} is not pinned to {digest}"
        );
    }
    p
}

/// The file `hello` of `tree`, checked out of `p`'s store.
fn checkout_hello(p: &Project, tree: &str) -> Vec<u8> {
    let scratch = p.root.join(format!("checkout-{}", &tree[7..19]));
    p.ok(&["store", "checkout", tree, scratch.to_str().unwrap()]);
    std::fs::read(scratch.join("hello")).unwrap()
}

/// ELF `e_machine`: 62 is x86-64, 183 is AArch64.
fn elf_machine(binary: &[u8]) -> u16 {
    assert_eq!(&binary[..4], b"\x7fELF", "not an ELF file");
    u16::from_le_bytes([binary[18], binary[19]])
}

#[test]
fn go_hello_cross_builds_and_its_arm64_binary_is_tested_under_qemu() {
    cross_builds_and_tests_arm64_under_qemu(&GO_HELLO);
}

#[test]
fn zig_hello_cross_builds_and_its_arm64_binary_is_tested_under_qemu() {
    cross_builds_and_tests_arm64_under_qemu(&ZIG_HELLO);
}

fn cross_builds_and_tests_arm64_under_qemu(spec: &Spec) {
    let p = example(spec);
    let [build_amd64, build_arm64] = spec.builds;
    let greeting = |arch: &str| format!("hello from {} on linux/{arch}", spec.example);
    let tests: Vec<&str> = ["test-amd64", "test-arm64"]
        .into_iter()
        .chain(spec.units.iter().map(|(name, _)| *name))
        .collect();

    let (code, first, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    for name in [build_amd64, build_arm64].iter().chain(&tests) {
        assert_eq!(step(&first, name)["status"], "built", "{name}: {err}");
    }
    for (name, passed) in spec.units {
        // `go test` built its test binary in /tmp and ran it there.
        assert!(err.contains(&format!("[{name}] {passed}")), "{err}");
    }
    // The arm64 binary ran (under QEMU: the host is amd64) and checked
    // its own greeting.
    assert!(
        err.contains(&format!("[test-arm64] {}\n", greeting("arm64")))
            && err.contains("[test-arm64] ok\n"),
        "{err}"
    );
    assert!(
        err.contains(&format!("[test-amd64] {}\n", greeting("amd64"))),
        "{err}"
    );

    // The binaries are what they claim to be, without sandbox paths.
    for (name, machine) in [(build_amd64, 62), (build_arm64, 183)] {
        let tree = step(&first, name)["output"].as_str().unwrap();
        let hello = checkout_hello(&p, tree);
        assert_eq!(elf_machine(&hello), machine, "{name}");
        let has = |s: &[u8]| hello.windows(s.len()).any(|w| w == s);
        assert!(has(spec.names), "{name}: not the example's program");
        for path in [&b"/src/"[..], b"/tmp/"] {
            assert!(
                !has(path),
                "{name}: a sandbox path {} is in the binary",
                text(path)
            );
        }
    }

    // Nothing changed: nothing runs.
    let (code, again, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    for s in &again {
        assert_eq!(s["status"], "cached", "{s}");
    }
    // The tests passed on these inputs: the release is signed.
    p.ok(&["key", "generate", "ci"]);
    p.ok(&["release", "--key", "ci"]);

    // Made to fail: the tests fail the run with exit 1 and their logs;
    // the builds, whose inputs did not change, stay cached.
    let recipe = p.recipe();
    let failing = recipe.replace(
        &format!("{} = \"\"", spec.fail),
        &format!("{} = \"1\"", spec.fail),
    );
    assert_ne!(recipe, failing, "the recipe's {} line moved", spec.fail);
    p.write("cairn.toml", &failing);
    let (code, failed, err) = p.test(&[]);
    assert_eq!(code, 1, "{err}");
    for name in spec.builds {
        assert_eq!(step(&failed, name)["status"], "cached", "{name}");
    }
    for name in &tests {
        let test = step(&failed, name);
        assert_eq!(test["status"], "failed", "{test}");
        assert!(
            test["error"]
                .as_str()
                .unwrap()
                .contains("exited with code 1"),
            "{test}"
        );
    }
    assert!(
        err.contains(&format!("[test-arm64] FAIL: {} is set", spec.fail)),
        "{err}"
    );
    for (name, passed) in spec.units {
        let failed = passed.replace("PASS", "FAIL");
        assert!(err.contains(&format!("[{name}] {failed}")), "{err}");
    }
    // And the release is refused: the tests have not passed on these inputs.
    let out = p.run(&["release", "--key", "ci"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("release refused") && err.contains("has not passed on these inputs"),
        "{err}"
    );
}

#[test]
fn make_trees_names_a_missing_toolchain_or_emulator_and_pins_nothing() {
    let cases = [
        ("go-hello", "GOROOT", "apt-get install golang-go"),
        ("go-hello", "QEMU", "apt-get install qemu-user-static"),
        ("zig-hello", "ZIGLANG", "pip install ziglang"),
        ("zig-hello", "QEMU", "apt-get install qemu-user-static"),
    ];
    for (example, var, install) in cases {
        let p = Project::example(example);
        let before = p.recipe();
        let missing = p.root.join("absent");
        let out = p
            .script_command(&p.dir.join("make-trees.sh"))
            .env(var, &missing)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{example} {var}: {err}");
        assert!(
            err.starts_with("make-trees.sh: ")
                && err.contains(missing.to_str().unwrap())
                && err.contains(install),
            "{example} {var}: {err}"
        );
        assert_eq!(before, p.recipe(), "{example} {var}: the pins changed");
    }
}
