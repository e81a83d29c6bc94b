//! Cross toolchains as pinned trees, end to end with the real examples:
//! `examples/go-hello` is copied into two directories, each with its own
//! store; its `make-trees.sh` makes Debian's Go toolchain and
//! `qemu-aarch64-static` into store trees and pins them; `cairn test`
//! builds the program for amd64 and arm64 and runs each binary on its own
//! platform, the arm64 one under the pinned QEMU. The tests fail (never
//! skip) when `golang-go` or `qemu-user-static` is missing; `.ci/run`
//! installs both.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const GO: &str = "/usr/bin/go";
const QEMU: &str = "/usr/bin/qemu-aarch64-static";

/// A copy of `examples/go-hello` with a store of its own.
struct Example {
    dir: PathBuf,
    store: PathBuf,
}

impl Example {
    /// Copies the example to `dir` and makes and pins its trees in `store`.
    fn new(dir: PathBuf, store: PathBuf) -> Self {
        assert!(
            Path::new(GO).exists(),
            "{GO} is missing: apt-get install golang-go"
        );
        assert!(
            Path::new(QEMU).exists(),
            "{QEMU} is missing: apt-get install qemu-user-static"
        );
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/go-hello");
        copy_dir(&example, &dir);
        let e = Self { dir, store };
        let out = Command::new(e.dir.join("make-trees.sh"))
            .env("CAIRN", CAIRN)
            .env("CAIRN_STORE", &e.store)
            .env_remove("GOROOT")
            .output()
            .unwrap();
        assert!(out.status.success(), "make-trees.sh: {}", text(&out.stderr));
        let printed = text(&out.stdout);
        for input in ["go", "qemu"] {
            let line = printed
                .lines()
                .find(|l| l.starts_with(&format!("{input}: sha256:")))
                .unwrap_or_else(|| panic!("no digest for {input}: {printed}"));
            let digest = line.split_whitespace().nth(1).unwrap();
            assert!(
                e.recipe().contains(&format!("tree = \"{digest}\"")),
                "{input} is not pinned to {digest}"
            );
        }
        e
    }

    fn recipe(&self) -> String {
        std::fs::read_to_string(self.dir.join("cairn.toml")).unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(CAIRN)
            .arg("--store")
            .arg(&self.store)
            .arg("--keys")
            .arg(self.store.with_extension("keys"))
            .args(args)
            .current_dir(&self.dir)
            .env_remove("CAIRN_STORE")
            .output()
            .unwrap()
    }

    /// `cairn --json test`: its exit code, each step by name, its stderr.
    fn test(&self) -> (i32, Vec<Value>, String) {
        let out = self.run(&["--json", "test"]);
        let steps: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
        (
            out.status.code().unwrap(),
            steps.as_array().unwrap().clone(),
            text(&out.stderr),
        )
    }

    /// The file `hello` of `tree`, checked out of the store.
    fn hello(&self, tree: &str, scratch: &Path) -> Vec<u8> {
        let out = self.run(&["store", "checkout", tree, scratch.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::read(scratch.join("hello")).unwrap()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
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

/// ELF `e_machine`: 62 is x86-64, 183 is AArch64.
fn elf_machine(binary: &[u8]) -> u16 {
    assert_eq!(&binary[..4], b"\x7fELF", "not an ELF file");
    u16::from_le_bytes([binary[18], binary[19]])
}

#[test]
fn go_hello_cross_builds_bit_for_bit_and_its_arm64_binary_is_tested_under_qemu() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Example::new(tmp.path().join("a/go-hello"), tmp.path().join("store-a"));
    let b = Example::new(
        tmp.path().join("elsewhere/deeper/b/go-hello"),
        tmp.path().join("stores/b"),
    );

    let (code, first, err) = a.test();
    assert_eq!(code, 0, "{err}");
    for name in ["build-amd64", "build-arm64", "test-amd64", "test-arm64"] {
        assert_eq!(step(&first, name)["status"], "built", "{name}: {err}");
    }
    // The arm64 binary ran (under QEMU: the host is amd64) and checked
    // its own greeting.
    assert!(
        err.contains("[test-arm64] hello from go-hello on linux/arm64\n")
            && err.contains("[test-arm64] ok\n"),
        "{err}"
    );
    assert!(
        err.contains("[test-amd64] hello from go-hello on linux/amd64\n"),
        "{err}"
    );

    // The binaries are what they claim to be, without sandbox paths.
    for (arch, machine) in [("amd64", 62), ("arm64", 183)] {
        let tree = step(&first, &format!("build-{arch}"))["output"]
            .as_str()
            .unwrap();
        let hello = a.hello(tree, &tmp.path().join(format!("checkout-{arch}")));
        assert_eq!(elf_machine(&hello), machine, "{arch}");
        let has = |s: &[u8]| hello.windows(s.len()).any(|w| w == s);
        assert!(has(b"example.com/go-hello"), "{arch}: no module path");
        assert!(
            !has(b"/src/main.go"),
            "{arch}: a sandbox path is in the binary"
        );
        assert!(
            !has(b"/tmp/go-cache"),
            "{arch}: the build cache's path is in the binary"
        );
    }

    // Another directory, another store, a clean build: the same bytes.
    let (code, second, err) = b.test();
    assert_eq!(code, 0, "{err}");
    for name in ["build-amd64", "build-arm64"] {
        assert_eq!(step(&second, name)["status"], "built", "{name}");
        assert_eq!(
            step(&first, name)["output"],
            step(&second, name)["output"],
            "{name} differs between two clean builds"
        );
        assert_eq!(
            step(&first, name)["action_digest"],
            step(&second, name)["action_digest"]
        );
    }

    // Nothing changed: nothing runs.
    let (code, again, err) = a.test();
    assert_eq!(code, 0, "{err}");
    for s in &again {
        assert_eq!(s["status"], "cached", "{s}");
    }
    // The tests passed on these inputs: the release is signed.
    let out = a.run(&["key", "generate", "ci"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = a.run(&["release", "--key", "ci"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Made to fail: the arm64 test fails the run with exit 1 and its log;
    // the builds, whose inputs did not change, stay cached.
    let recipe = a.recipe();
    let failing = recipe.replace("GO_HELLO_FAIL = \"\"", "GO_HELLO_FAIL = \"1\"");
    assert_ne!(recipe, failing, "the recipe's GO_HELLO_FAIL line moved");
    std::fs::write(a.dir.join("cairn.toml"), failing).unwrap();
    let (code, failed, err) = a.test();
    assert_eq!(code, 1, "{err}");
    for arch in ["amd64", "arm64"] {
        assert_eq!(step(&failed, &format!("build-{arch}"))["status"], "cached");
        let test = step(&failed, &format!("test-{arch}"));
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
        err.contains("[test-arm64] FAIL: GO_HELLO_FAIL is set"),
        "{err}"
    );
    // And the release is refused: the tests have not passed on these inputs.
    let out = a.run(&["release", "--key", "ci"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("release refused") && err.contains("has not passed on these inputs"),
        "{err}"
    );
}
