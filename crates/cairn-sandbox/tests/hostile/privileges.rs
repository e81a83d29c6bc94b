//! What a step may do to the kernel and as whom: the system-call filter,
//! `ptrace`, the host ids it runs as, setuid files, its emulator's
//! registration.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use cairn_sandbox::{Emulator, Mount, Termination};

use crate::common::{assert_exit, probe_plan, Fixture};
use crate::{in_step_range, results};

#[test]
fn refused_system_calls_fail_with_their_errno() {
    let f = Fixture::new();
    let r = f.run(&probe_plan(&f, &["syscalls"]));
    assert_exit(&r, 0);
    let got = results(&r);
    let eperm = "EPERM (Operation not permitted (os error 1))";
    let enosys = "ENOSYS (Function not implemented (os error 38))";
    let mut expected: Vec<(&str, &str)> = [
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "unshare(CLONE_NEWUSER)",
        "clone(CLONE_NEWUSER)",
        "ioctl(TIOCSTI)",
        "ioctl(TIOCSTI, high bits)",
        "clock_settime",
        "open_tree",
        "setns",
        "process_vm_readv",
        "kcmp",
        "mount",
        "pivot_root",
        "fsopen",
        "move_mount",
        "reboot",
        "kexec_load",
        "init_module",
        "finit_module",
        "swapon",
        "acct",
        "settimeofday",
        "open_by_handle_at",
    ]
    .iter()
    .map(|c| (*c, eperm))
    .collect();
    expected.extend([("io_uring_setup", enosys), ("clone3", enosys)]);
    #[cfg(target_arch = "x86_64")]
    expected.push(("modify_ldt", eperm));
    for (call, errno) in expected {
        assert_eq!(
            got.get(call).map(String::as_str),
            Some(errno),
            "{call}: {}",
            r.stdout
        );
    }
    // The control: calls not on the list work.
    assert!(got["getppid"].starts_with("ok "), "{}", r.stdout);
    // x32 calls never succeed (refused, or not built into the kernel).
    #[cfg(target_arch = "x86_64")]
    assert!(!got["x32 keyctl"].starts_with("ok"), "{}", r.stdout);
}

#[test]
fn ptrace_reaches_own_children_only_and_pid_1_survives() {
    let f = Fixture::new();
    let r = f.run(&probe_plan(&f, &["ptrace"]));
    assert_exit(&r, 0);
    let got = results(&r);
    assert_eq!(got["own child"], "stopped true, exit 7", "{}", r.stdout);
    assert!(got["ptrace(PTRACE_CONT, own child)"].starts_with("ok"));
    for attach in ["ptrace(PTRACE_ATTACH, 1)", "ptrace(PTRACE_SEIZE, 1)"] {
        assert!(got[attach].starts_with("EPERM"), "{attach}: {}", r.stdout);
    }
    // SIGKILL to the namespace's init from inside is dropped: the step
    // went on and finished normally.
    assert!(got.contains_key("kill(1, SIGKILL)"));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_32_bit_system_call_kills_the_step() {
    let f = Fixture::new();
    let r = f.run(&probe_plan(&f, &["i386"]));
    assert_eq!(
        r.outcome.status,
        Termination::Signaled(libc::SIGSYS),
        "{}",
        r.stdout
    );
    assert_eq!(r.stdout, "calling int 0x80\n");
}

/// `(uid line, gid line, groups line)` of a host process.
fn host_ids(pid: &str) -> Option<(String, String, String)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    Some((field("Uid:")?, field("Gid:")?, field("Groups:")?))
}

#[test]
fn the_step_runs_as_an_unprivileged_host_user_without_groups() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "run the sandbox tests as root"
    );
    let f = Fixture::new();
    let plan = f.plan("sleep 4.321; id -u");
    let watcher = std::thread::spawn(|| {
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            for e in fs::read_dir("/proc").unwrap().flatten() {
                let pid = e.file_name().to_string_lossy().into_owned();
                let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmd).contains("4.321") {
                    if let Some(ids) = host_ids(&pid) {
                        return Some(ids);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    });
    let r = f.run(&plan);
    assert_exit(&r, 0);
    assert_eq!(r.stdout, "1000\n");
    let (uid, gid, groups) = watcher.join().unwrap().expect("the step's sleep was seen");
    for line in [&uid, &gid] {
        let ids: Vec<u32> = line
            .split_whitespace()
            .map(|i| i.parse().unwrap())
            .collect();
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().all(|i| in_step_range(*i)), "host ids {line}");
    }
    assert_eq!(groups, "", "supplementary groups leak");
}

fn host_mounts() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap()
}

#[test]
fn setuid_files_a_step_makes_never_exist_on_a_host_file_system() {
    let f = Fixture::new();
    let before = host_mounts();
    let r = f.sh(
        "cp /bin/busybox /out/su && chmod 4755 /out/su && stat -c '%a %u' /out/su; \
         grep ' /out ' /proc/mounts | cut -d' ' -f3,4",
    );
    assert_exit(&r, 0);
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some("4755 1000"), "{}", r.stdout);
    let mount = lines.next().unwrap();
    assert!(
        mount.starts_with("tmpfs ") && mount.contains("nosuid"),
        "{mount}"
    );
    // The file exists only on the step's tmpfs, reachable only through
    // the descriptor this process holds, and belongs to the step's id.
    let su = fs::metadata(r.out("su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    assert!(in_step_range(su.uid()), "owner {}", su.uid());
    assert_eq!(host_mounts(), before, "the host's mount table changed");
}

/// A step with an emulator (as a foreign platform's): the registration is
/// in the sandbox's own binfmt_misc, where the step reads it but can
/// neither clear, disable nor add one, and the host's binfmt_misc never
/// has it.
#[test]
fn a_step_cannot_change_its_emulator_registration_and_the_host_never_has_it() {
    const QEMU: &str = "/usr/bin/qemu-aarch64-static";
    let f = Fixture::new();
    let emu = f.path("emulator");
    fs::create_dir_all(&emu).unwrap();
    fs::copy(QEMU, emu.join("qemu-aarch64-static"))
        .unwrap_or_else(|e| panic!("{QEMU}: {e}: apt-get install qemu-user-static"));
    let entry = "/proc/sys/fs/binfmt_misc/cairn-probe";
    let mut plan = f.plan(&format!(
        "head -2 {entry}; \
         echo -1 > /proc/sys/fs/binfmt_misc/status && echo cleared; \
         echo 0 > {entry} && echo disabled; \
         echo :x:E::x::/bin/sh: > /proc/sys/fs/binfmt_misc/register && echo added; \
         head -1 {entry}"
    ));
    plan.mounts.push(Mount {
        target: "/emu".into(),
        source: emu,
        writable: false,
    });
    let mut magic = b"\x7fELF\x02\x01\x01".to_vec();
    magic.extend([0; 9]);
    magic.extend([2, 0, 0xb7, 0]);
    let mut mask = vec![0xff; 20];
    (mask[7], mask[16]) = (0, 0xfe);
    plan.emulator = Some(Emulator {
        name: "cairn-probe".into(),
        magic,
        mask,
        interpreter: "/emu/qemu-aarch64-static".into(),
    });
    let r = f.run(&plan);
    assert_exit(&r, 0);
    assert_eq!(
        r.stdout, "enabled\ninterpreter /emu/qemu-aarch64-static\nenabled\n",
        "stderr: {}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("Permission denied").count(),
        3,
        "{}",
        r.stderr
    );
    assert!(
        !std::path::Path::new(entry).exists(),
        "the host has the entry"
    );
}
