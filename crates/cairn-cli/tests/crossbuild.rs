//! Cross toolchains as pinned trees, end to end with the real examples:
//! `examples/go-hello` (Debian's Go) and `examples/zig-hello` (`zig cc`
//! from the `ziglang` wheel) are each copied into two directories, each
//! with its own store; the example's `make-trees.sh` makes the toolchain
//! and `qemu-aarch64-static` into store trees and pins them; `cairn test`
//! builds the program for amd64 and arm64 and runs each binary on its own
//! platform, the arm64 one under the pinned QEMU; go-hello also runs its
//! package's own tests with `go test` (which executes a binary it builds
//! in the sandbox's `/tmp`), natively and for arm64 through `-exec` QEMU. The second build varies what reprotest varies
//! (another hostname in a new UTS namespace, umask 077, another user,
//! home, locale, time zone and `SOURCE_DATE_EPOCH`) and must give the same
//! bytes. The tests fail (never skip) when `golang-go`, the `ziglang`
//! wheel, `qemu-user-static` or `unshare` is missing; `.ci/run` installs
//! them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
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

/// A copy of an example with a store of its own.
struct Example {
    dir: PathBuf,
    store: PathBuf,
    /// Whether `cairn` runs in varied surroundings (see the module docs).
    varied: bool,
}

impl Example {
    /// Copies the example to `dir` and makes and pins its trees in `store`.
    fn new(spec: &Spec, dir: PathBuf, store: PathBuf, varied: bool) -> Self {
        require(spec);
        let example = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(spec.example);
        copy_dir(&example, &dir);
        let e = Self { dir, store, varied };
        let out = Command::new(e.dir.join("make-trees.sh"))
            .env("CAIRN", CAIRN)
            .env("CAIRN_STORE", &e.store)
            .env_remove("GOROOT")
            .env_remove("ZIGLANG")
            .output()
            .unwrap();
        assert!(out.status.success(), "make-trees.sh: {}", text(&out.stderr));
        let printed = text(&out.stdout);
        for input in [spec.toolchain, "qemu"] {
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
        let mut cmd = if self.varied {
            let home = self.dir.with_extension("home");
            std::fs::create_dir_all(&home).unwrap();
            let mut c = Command::new("unshare");
            c.args(["--uts", "sh", "-c"])
                .arg("hostname crossbuild-elsewhere && umask 077 && exec \"$@\"")
                .args(["sh", CAIRN])
                .env("HOME", home)
                .env("USER", "someone")
                .env("LANG", "fr_FR.UTF-8")
                .env("LC_ALL", "fr_FR.UTF-8")
                .env("TZ", "Pacific/Kiritimati")
                .env("SOURCE_DATE_EPOCH", "1700864000");
            c
        } else {
            Command::new(CAIRN)
        };
        cmd.arg("--store")
            .arg(&self.store)
            .arg("--keys")
            .arg(self.store.with_extension("keys"))
            .args(args)
            .current_dir(&self.dir)
            .env_remove("CAIRN_STORE")
            .output()
            .expect("unshare (util-linux) must be installed")
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
    cross_builds_bit_for_bit_and_tests_arm64_under_qemu(&GO_HELLO);
}

#[test]
fn zig_hello_cross_builds_bit_for_bit_and_its_arm64_binary_is_tested_under_qemu() {
    cross_builds_bit_for_bit_and_tests_arm64_under_qemu(&ZIG_HELLO);
}

fn cross_builds_bit_for_bit_and_tests_arm64_under_qemu(spec: &Spec) {
    let tmp = tempfile::tempdir().unwrap();
    let a = Example::new(
        spec,
        tmp.path().join("a/hello"),
        tmp.path().join("store-a"),
        false,
    );
    let b = Example::new(
        spec,
        tmp.path().join("elsewhere/deeper/b/hello"),
        tmp.path().join("stores/b"),
        true,
    );
    let [build_amd64, build_arm64] = spec.builds;
    let greeting = |arch: &str| format!("hello from {} on linux/{arch}", spec.example);
    let tests: Vec<&str> = ["test-amd64", "test-arm64"]
        .into_iter()
        .chain(spec.units.iter().map(|(name, _)| *name))
        .collect();

    let (code, first, err) = a.test();
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
        let hello = a.hello(tree, &tmp.path().join(format!("checkout-{name}")));
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

    // Another directory, another store, a clean build: the same bytes.
    let (code, second, err) = b.test();
    assert_eq!(code, 0, "{err}");
    for name in spec.builds {
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

    // Made to fail: the tests fail the run with exit 1 and their logs;
    // the builds, whose inputs did not change, stay cached.
    let recipe = a.recipe();
    let failing = recipe.replace(
        &format!("{} = \"\"", spec.fail),
        &format!("{} = \"1\"", spec.fail),
    );
    assert_ne!(recipe, failing, "the recipe's {} line moved", spec.fail);
    std::fs::write(a.dir.join("cairn.toml"), failing).unwrap();
    let (code, failed, err) = a.test();
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
    let out = a.run(&["release", "--key", "ci"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("release refused") && err.contains("has not passed on these inputs"),
        "{err}"
    );
}

#[test]
fn make_trees_names_a_missing_toolchain_or_emulator_and_pins_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("go-hello", "GOROOT", "apt-get install golang-go"),
        ("go-hello", "QEMU", "apt-get install qemu-user-static"),
        ("zig-hello", "ZIGLANG", "pip install ziglang"),
        ("zig-hello", "QEMU", "apt-get install qemu-user-static"),
    ];
    for (example, var, install) in cases {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(example);
        let dir = tmp.path().join(format!("{example}-{var}"));
        copy_dir(&from, &dir);
        let before = std::fs::read_to_string(dir.join("cairn.toml")).unwrap();
        let missing = tmp.path().join("absent");
        let out = Command::new(dir.join("make-trees.sh"))
            .env("CAIRN", CAIRN)
            .env("CAIRN_STORE", tmp.path().join("store"))
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
        let after = std::fs::read_to_string(dir.join("cairn.toml")).unwrap();
        assert_eq!(before, after, "{example} {var}: the pins changed");
    }
}
