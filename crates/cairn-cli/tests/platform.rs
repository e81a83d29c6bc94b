//! Steps for another platform end to end: an arm64 program runs in an
//! arm64 test step under QEMU user emulation, the interpreter taken from a
//! pinned store tree made from Debian's `qemu-user-static`
//! (`/usr/bin/qemu-aarch64-static`; the tests fail if it is missing,
//! `.ci/run` installs it), never from the host's binfmt configuration.
//! The arm64 programs are minimal static ELFs written by the test itself
//! (write(1, msg), exit(code); or execve of another: eight instructions
//! each), so no cross compiler is needed; a riscv64 one (nine
//! instructions) runs the same way under `qemu-riscv64-static`, a second
//! foreign platform.

mod support;

use std::path::Path;

use serde_json::Value;
use support::cli::text;
use support::project::Project;

const QEMU: &str = "/usr/bin/qemu-aarch64-static";
const QEMU_RISCV64: &str = "/usr/bin/qemu-riscv64-static";

const BASE: u64 = 0x40_0000;
const CODE: u64 = 64 + 56; // after the ELF header and one program header

fn movz(rd: u32, imm: u16) -> u32 {
    0xd280_0000 | (u32::from(imm) << 5) | rd
}

/// `adr rd, pc + delta`.
fn adr(rd: u32, delta: u64) -> u32 {
    let delta = delta as u32;
    ((delta & 3) << 29) | (0b10000 << 24) | ((delta >> 2) << 5) | rd
}

const SVC: u32 = 0xd400_0001;

/// ELF machine numbers.
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;

/// A static 64-bit little-endian Linux executable for `machine`: `code`
/// followed by `data`, loaded at `BASE`.
fn elf(machine: u16, code: &[u32], data: &[u8]) -> Vec<u8> {
    let total = CODE + 4 * code.len() as u64 + data.len() as u64;
    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&machine.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + CODE).to_le_bytes()); // entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [64u16, 56, 1, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // R + X
    for word in [0, BASE, BASE, total, total, 0x1000] {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    for insn in code {
        elf.extend_from_slice(&insn.to_le_bytes());
    }
    elf.extend_from_slice(data);
    elf
}

/// A static aarch64 Linux executable that writes `msg` to stdout and exits
/// with `code`.
fn arm64_program(msg: &[u8], code: u16) -> Vec<u8> {
    let msg_at = CODE + 8 * 4;
    let len = u16::try_from(msg.len()).unwrap();
    let code = [
        movz(0, 1),                  // x0 = stdout
        adr(1, msg_at - (CODE + 4)), // x1 = msg
        movz(2, len),                // x2 = len
        movz(8, 64),                 // write
        SVC,
        movz(0, code), // x0 = code
        movz(8, 93),   // exit
        SVC,
    ];
    elf(EM_AARCH64, &code, msg)
}

/// A static aarch64 Linux executable that runs `path` (another aarch64
/// program): `execve(path, [path], NULL)`, or exits with 99 if it cannot.
fn arm64_exec(path: &str) -> Vec<u8> {
    let argv_at = CODE + 8 * 4; // 8-byte aligned
    let path_at = argv_at + 16;
    let code = [
        adr(0, path_at - CODE),       // x0 = path
        adr(1, argv_at - (CODE + 4)), // x1 = argv
        movz(2, 0),                   // x2 = envp = NULL
        movz(8, 221),                 // execve
        SVC,
        movz(0, 99), // it returned: x0 = 99
        movz(8, 93), // exit
        SVC,
    ];
    let mut data = Vec::new();
    data.extend_from_slice(&(BASE + path_at).to_le_bytes());
    data.extend_from_slice(&0u64.to_le_bytes());
    data.extend_from_slice(path.as_bytes());
    data.push(0);
    elf(EM_AARCH64, &code, &data)
}

/// A static riscv64 Linux executable that writes `msg` to stdout and
/// exits with `code` (`EM_RISCV`, RV64I only, no compressed instructions).
fn riscv64_program(msg: &[u8], code: u16) -> Vec<u8> {
    let addi = |rd: u32, rs1: u32, imm: u32| ((imm & 0xfff) << 20) | (rs1 << 15) | (rd << 7) | 0x13;
    let auipc = |rd: u32| (rd << 7) | 0x17;
    let ecall = 0x73;
    let (a0, a1, a2, a7) = (10, 11, 12, 17);
    let msg_at = CODE + 9 * 4;
    let len = u32::try_from(msg.len()).unwrap();
    let code = [
        addi(a0, 0, 1),                             // a0 = stdout
        auipc(a1),                                  // a1 = this instruction
        addi(a1, a1, (msg_at - (CODE + 4)) as u32), // a1 = msg
        addi(a2, 0, len),                           // a2 = len
        addi(a7, 0, 64),                            // write
        ecall,
        addi(a0, 0, u32::from(code)), // a0 = code
        addi(a7, 0, 93),              // exit
        ecall,
    ];
    elf(EM_RISCV, &code, msg)
}

/// A project with `bin/hello` (arm64, exit `code`), `bin/exec-hello` and
/// `bin/hello-riscv64`, and the emulators' tree in its store: its digest.
fn project(code: u16) -> (Project, String) {
    for qemu in [QEMU, QEMU_RISCV64] {
        assert!(
            Path::new(qemu).exists(),
            "{qemu} is missing: apt-get install qemu-user-static"
        );
    }
    let p = Project::empty("proj");
    std::fs::create_dir_all(p.dir.join("bin")).unwrap();
    let hello = p.dir.join("bin/hello");
    std::fs::write(&hello, arm64_program(b"hello from arm64\n", code)).unwrap();
    set_executable(&hello);
    let exec = p.dir.join("bin/exec-hello");
    std::fs::write(&exec, arm64_exec("/b/hello")).unwrap();
    set_executable(&exec);
    let riscv = p.dir.join("bin/hello-riscv64");
    std::fs::write(&riscv, riscv64_program(b"hello from riscv64\n", code)).unwrap();
    set_executable(&riscv);
    let qemu = p.root.join("qemu");
    std::fs::create_dir_all(&qemu).unwrap();
    std::fs::copy(QEMU, qemu.join("qemu-aarch64-static")).unwrap();
    std::fs::copy(QEMU_RISCV64, qemu.join("qemu-riscv64-static")).unwrap();
    let tree = p.ok(&["store", "add", qemu.to_str().unwrap()]);
    (p, tree)
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn recipe(tree: &str, platform: &str) -> String {
    format!(
        r#"[service]
name = "arm"

[inputs.qemu]
tree = "{tree}"

[inputs.bin]
path = "bin"

[steps.hello]
test = true
{platform}
mounts = {{ "/b" = "bin" }}
run = ["/b/hello"]
"#
    )
}

const ARM64: &str = "platform = \"linux/arm64\"\nemulator = \"qemu\"";

#[test]
fn an_arm64_step_runs_under_the_pinned_emulator_and_is_cached_per_platform() {
    let (p, tree) = project(0);
    p.write("cairn.toml", &recipe(&tree, ARM64));
    let (code, steps, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(steps[0]["status"], "built");
    assert!(err.contains("[hello] hello from arm64"), "{err}");
    let (code, again, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again[0]["status"], "cached");

    // Natively the program cannot run at all (no binfmt is used): the
    // emulation is what ran it.
    p.write("cairn.toml", &recipe(&tree, ""));
    let (code, steps, _) = p.test(&[]);
    assert_eq!(code, 1);
    let error = steps[0]["error"].as_str().unwrap();
    assert!(error.contains("/b/hello"), "{error}");
    assert!(
        error.to_lowercase().contains("exec format error"),
        "{error}"
    );
}

/// The step's program starts another arm64 program: the emulator is
/// registered with the sandbox's own binfmt_misc, so that one runs under
/// it too (the host has no binfmt_misc entry for arm64, and none is made).
#[test]
fn an_arm64_program_started_by_an_arm64_step_runs_under_the_emulator_too() {
    let (p, tree) = project(4);
    p.write(
        "cairn.toml",
        &recipe(&tree, ARM64).replace("[\"/b/hello\"]", "[\"/b/exec-hello\"]"),
    );
    let (code, steps, err) = p.test(&[]);
    assert_eq!(code, 1, "{err}");
    let error = steps[0]["error"].as_str().unwrap();
    // 4 is hello's own exit code (99 would be the failed execve).
    assert!(error.contains("exited with code 4"), "{error}");
    assert!(err.contains("[hello] hello from arm64"), "{err}");
    let host = Path::new("/proc/sys/fs/binfmt_misc/cairn-aarch64");
    assert!(!host.exists(), "the host's binfmt_misc was changed");
}

#[test]
fn a_failing_arm64_test_fails_and_a_missing_emulator_is_named() {
    let (p, tree) = project(3);
    p.write("cairn.toml", &recipe(&tree, ARM64));
    let (code, steps, err) = p.test(&[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(steps[0]["status"], "failed");
    assert!(
        steps[0]["error"]
            .as_str()
            .unwrap()
            .contains("exited with code 3"),
        "{steps:?}"
    );
    assert!(err.contains("[hello] hello from arm64"), "{err}");

    // No emulator named: which tree to add, before anything runs.
    p.write("cairn.toml", &recipe(&tree, "platform = \"linux/arm64\""));
    let (code, steps, _) = p.test(&[]);
    assert_eq!(code, 1);
    let error = steps[0]["error"].as_str().unwrap();
    assert!(
        error.contains("platform linux/arm64")
            && error.contains("qemu-aarch64-static")
            && error.contains("emulator = \"INPUT\""),
        "{error}"
    );

    // The emulator's pinned tree is not in this store: named, with how.
    let missing = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    p.write("cairn.toml", &recipe(missing, ARM64));
    let out = p.run(&["test"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("input `qemu`") && err.contains(missing) && err.contains("cairn store add"),
        "{err}"
    );
}

#[test]
fn a_release_provenance_names_the_arm64_platform_of_its_steps_and_tests() {
    let (p, tree) = project(0);
    p.write("cairn.toml", &format!(
        "{}\n[steps.compile]\n{ARM64}\nmounts = {{ \"/b\" = \"bin\" }}\nrun = [\"/b/hello\"]\n\n\
         [release]\nstep = \"compile\"\nrequires = [\"steps.hello\"]\n\n[release.run]\ncommand = [\"hello\"]\n",
        recipe(&tree, ARM64)
    ));
    p.ok(&["key", "generate", "ci"]);
    let (code, steps, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    let out = p.run(&["--json", "release", "--key", "ci"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let released: Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = p.run(&[
        "--json",
        "release",
        "show",
        released["release"].as_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let test = &shown["tests"][0];
    assert_eq!(test["step"], "hello");
    assert_eq!(test["action"], steps[0]["action_digest"]);
    assert_eq!(test["result"], "passed");
    assert_eq!(test["platform"], "linux/arm64");
    assert_eq!(test["native"], false, "ran under QEMU");
    let step = &shown["steps"][0];
    assert_eq!(step["step"], "compile");
    assert_eq!(step["action"], released["action"]);
    assert_eq!(step["platform"], "linux/arm64");
    assert_eq!(step["native"], false);
}

#[test]
fn a_riscv64_step_runs_under_its_own_emulator_from_the_same_tree() {
    let (p, tree) = project(0);
    let riscv = recipe(&tree, "platform = \"linux/riscv64\"\nemulator = \"qemu\"")
        .replace("/b/hello", "/b/hello-riscv64");
    p.write("cairn.toml", &riscv);
    let (code, steps, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(steps[0]["status"], "built");
    assert!(err.contains("[hello] hello from riscv64"), "{err}");

    // As arm64 the same program is refused by the arm64 emulator: the
    // platform chose the interpreter, and it is part of the action.
    let as_arm64 = riscv.replace("linux/riscv64", "linux/arm64");
    p.write("cairn.toml", &as_arm64);
    let (code, steps, err) = p.test(&[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(steps[0]["status"], "failed");
    assert!(!err.contains("hello from riscv64"), "{err}");
}
