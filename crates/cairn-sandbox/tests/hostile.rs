//! A hostile step's attempts, each run in the real sandbox (as root in
//! CI, so the step gets an id of its own): every one is refused, the
//! refusal shows in the step's own output or in how it ended, and the host
//! is unchanged afterwards.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use cairn_sandbox::{Emulator, Mount, Scratch, Termination, FIRST_HOST_ID, HOST_ID_SLOTS};
use common::{assert_exit, host_processes_with, probe_plan, Fixture, Ran};

/// The probe's `what: result` lines as a map.
fn results(r: &Ran) -> BTreeMap<String, String> {
    r.stdout
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn in_step_range(id: u32) -> bool {
    (FIRST_HOST_ID..FIRST_HOST_ID + HOST_ID_SLOTS).contains(&id)
}

#[test]
fn pid_1_carries_nothing_of_the_caller() {
    let f = Fixture::new();
    let me = std::env::current_exe().unwrap();
    let me = me.file_name().unwrap().to_str().unwrap();
    let r = f.sh(&format!(
        "tr '\\0' '|' < /proc/1/cmdline; echo; cat /proc/1/comm; \
         cat /proc/1/environ >/dev/null 2>&1 || echo environ-refused; \
         cat /proc/1/auxv >/dev/null 2>&1 || echo auxv-refused; \
         cat /proc/1/maps >/dev/null 2>&1 || echo maps-refused; \
         readlink /proc/1/exe >/dev/null 2>&1 || echo exe-refused; \
         ls /proc/1/fd >/dev/null 2>&1 || echo fds-refused; \
         ls /proc/1/root/ >/dev/null 2>&1 || echo root-refused; \
         kill -0 {host} 2>/dev/null || echo caller-unreachable",
        host = std::process::id()
    ));
    assert_exit(&r, 0);
    let mut lines = r.stdout.lines();
    let cmdline = lines.next().unwrap();
    assert!(cmdline.starts_with("cairn-sandbox-init|"), "{cmdline}");
    assert!(cmdline
        .trim_start_matches("cairn-sandbox-init")
        .chars()
        .all(|c| c == '|'));
    assert!(
        !r.stdout.contains(me),
        "the caller's command line leaks: {}",
        r.stdout
    );
    let rest: Vec<&str> = lines.collect();
    assert_eq!(
        rest,
        [
            "cairn-init",
            "environ-refused",
            "auxv-refused",
            "maps-refused",
            "exe-refused",
            "fds-refused",
            "root-refused",
            "caller-unreachable"
        ],
        "stderr: {}",
        r.stderr
    );
}

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

/// keyctl(2) on this thread's keyrings.
fn keyctl(op: libc::c_long, a: libc::c_long, b: libc::c_long, c: libc::c_long) -> libc::c_long {
    // SAFETY: keyctl with integer arguments or pointers the caller keeps
    // alive; the last argument (a destination keyring for a search) is 0.
    unsafe { libc::syscall(libc::SYS_keyctl, op, a, b, c, 0) }
}

#[test]
fn keyrings_are_fresh_and_unreachable() {
    const JOIN: libc::c_long = 1;
    const SEARCH: libc::c_long = 10;
    const READ: libc::c_long = 11;
    const SESSION: libc::c_long = -3;
    // This test thread gets a session keyring of its own holding a secret
    // (the sandbox is forked from this thread and would inherit it).
    let ring = CString::new(format!("cairn-test-{}", std::process::id())).unwrap();
    assert!(
        keyctl(JOIN, ring.as_ptr() as _, 0, 0) > 0,
        "joining a session keyring"
    );
    let (kind, desc, secret) = (c"user", c"cairn-test-secret", b"s3cret-payload");
    // SAFETY: valid C strings and a payload buffer.
    let key = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            kind.as_ptr(),
            desc.as_ptr(),
            secret.as_ptr(),
            secret.len(),
            SESSION,
        )
    };
    assert!(key > 0, "adding a key");

    let f = Fixture::new();
    let r = f.run(&probe_plan(&f, &["keys"]));
    assert_exit(&r, 0);
    assert!(r.stdout.starts_with("/proc/keys:"), "{}", r.stdout);
    assert!(!r.stdout.contains("cairn-test"), "{}", r.stdout);
    let r = f.run(&probe_plan(&f, &["syscalls"]));
    assert_exit(&r, 0);
    assert!(results(&r)["add_key"].starts_with("EPERM"));

    // The host's keyring is as it was: the secret is there, unchanged,
    // and nothing was planted next to it.
    let found = keyctl(SEARCH, SESSION, kind.as_ptr() as _, desc.as_ptr() as _);
    assert_eq!(found, key);
    let mut buf = [0u8; 64];
    let n = keyctl(READ, key, buf.as_mut_ptr() as _, buf.len() as _);
    assert_eq!(&buf[..n as usize], secret);
    let planted = keyctl(SEARCH, SESSION, kind.as_ptr() as _, c"probe".as_ptr() as _);
    assert_eq!(planted, -1);
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

#[test]
fn a_full_out_or_tmp_is_named_with_its_limit() {
    let f = Fixture::new();
    let mut plan = f.plan("dd if=/dev/zero of=/out/big bs=1024 count=4096");
    plan.limits.out_bytes = Some(1 << 20);
    let r = f.run(&plan);
    assert_eq!(
        r.outcome.status,
        Termination::OutOfSpace {
            mount: Scratch::Out,
            limit: 1 << 20
        },
        "{}",
        r.stderr
    );
    let mut plan = f.plan("dd if=/dev/zero of=/tmp/big bs=1024 count=4096");
    plan.limits.tmp_bytes = Some(1 << 20);
    let r = f.run(&plan);
    assert_eq!(
        r.outcome.status,
        Termination::OutOfSpace {
            mount: Scratch::Tmp,
            limit: 1 << 20
        }
    );
}

#[test]
fn a_fork_bomb_is_a_process_limit_not_a_timeout() {
    let f = Fixture::new();
    let mut plan = f.plan("b() { b & b; }; b; sleep 77.345");
    plan.limits.max_processes = Some(16);
    plan.timeout = Duration::from_secs(30);
    let r = f.run(&plan);
    assert_eq!(r.outcome.status, Termination::ProcessLimit);
    assert!(
        r.outcome.duration < Duration::from_secs(10),
        "{:?}",
        r.outcome
    );
    assert_eq!(host_processes_with("77.345"), Vec::<String>::new());
}

#[test]
fn no_terminal_and_fixed_limits_whatever_the_caller_has() {
    // The caller's own limits must not reach the step: lower ours.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit out/in pointers; RLIMIT_MEMLOCK matters to no
    // other test.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim), 0);
        assert!(
            lim.rlim_max >= 8 << 20,
            "hard RLIMIT_MEMLOCK {}",
            lim.rlim_max
        );
        lim.rlim_cur = 64 << 10;
        assert_eq!(libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim), 0);
    }
    let f = Fixture::new();
    let r = f.sh(
        "set -- $(cat /proc/self/stat); echo tty=$7; ulimit -l; ulimit -c; \
         test -e /dev/tty || echo no-tty",
    );
    assert_exit(&r, 0);
    assert_eq!(r.stdout, "tty=0\n8192\n0\nno-tty\n", "{}", r.stderr);
}

#[test]
fn pid_1_s_other_proc_files_and_the_kernel_s_other_windows_are_closed() {
    let f = Fixture::new();
    let r = f.sh(
        "for p in mem stack environ io syscall; do \
           head -c 1 /proc/1/$p >/dev/null 2>&1 || echo $p-refused; \
         done; \
         for p in cwd ns; do ls /proc/1/$p/ >/dev/null 2>&1 || echo $p-refused; done; \
         ls /sys >/dev/null 2>&1 || echo no-sys; \
         ls /dev/shm /dev/pts /dev/tty /dev/kmsg /dev/mem >/dev/null 2>&1 || echo no-devices; \
         (echo x > /proc/sys/kernel/hostname) 2>/dev/null || echo sysctl-refused; \
         (echo x > /proc/sysrq-trigger) 2>/dev/null || echo sysrq-refused; \
         grep -E '^(CapEff|CapPrm|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '; \
         grep -c keyring /proc/keys",
    );
    assert_exit(&r, 0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "mem-refused",
            "stack-refused",
            "environ-refused",
            "io-refused",
            "syscall-refused",
            "cwd-refused",
            "ns-refused",
            "no-sys",
            "no-devices",
            "sysctl-refused",
            "sysrq-refused",
            "CapPrm: 0000000000000000",
            "CapEff: 0000000000000000",
            "CapAmb: 0000000000000000",
            "NoNewPrivs: 1",
            "Seccomp: 2",
            "1",
        ],
        "stderr: {}",
        r.stderr
    );
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

/// The step's fd 1 and 2 are pipes: the caller's log file, on the host's
/// disk, can be neither grown at once, nor written far past its end, nor
/// truncated, and what the step prints is cut at `limits.log_bytes`, the
/// step killed and the end named.
#[test]
fn a_step_s_output_is_a_pipe_bounded_by_its_log_limit() {
    let f = Fixture::new();
    let mut plan = probe_plan(&f, &["stdout", "3000000"]);
    plan.limits.log_bytes = Some(1 << 20);
    let r = f.run(&plan);
    assert_eq!(
        r.outcome.status,
        Termination::LogLimit { limit: 1 << 20 },
        "{}",
        r.stderr
    );
    let tried: BTreeMap<&str, &str> = r
        .stderr
        .lines()
        .filter_map(|l| l.split_once(": "))
        .collect();
    for call in [
        "fallocate(1, 1 GiB)",
        "pwrite(1, at 1 TiB)",
        "ftruncate(1, 0)",
        "lseek(1, 0)",
    ] {
        let got = tried.get(call).copied().unwrap_or("not tried");
        assert!(
            got.starts_with("ESPIPE") || got.starts_with("EINVAL"),
            "{call}: {got}"
        );
    }
    // The host files hold exactly the limit, allocated as written.
    let (out, err) = (
        fs::metadata(f.path("stdout.log")).unwrap(),
        fs::metadata(f.path("stderr.log")).unwrap(),
    );
    assert_eq!(out.len() + err.len(), 1 << 20);
    assert!(
        out.blocks() * 512 <= (1 << 20) + 4096,
        "{} blocks",
        out.blocks()
    );
    assert!(r.stdout.bytes().all(|b| b == b'x'));

    // A step printing without pause still meets its deadline.
    let mut plan = f.plan("while :; do echo 01234567890123456789; done");
    plan.timeout = Duration::from_secs(1);
    plan.limits.log_bytes = Some(256 << 20);
    let r = f.run(&plan);
    assert_eq!(r.outcome.status, Termination::TimedOut);
    assert!(r.stdout.starts_with("01234567890123456789\n"));
}

/// Memory the step uses only in the kernel (the inodes of many empty
/// files in `/out`, which has no inode limit of its own) counts against
/// `limits.memory_bytes`, and when the OOM killer picks pid 1 rather than
/// the step, the end is still reported as the memory limit, not as a
/// sandbox that vanished.
#[test]
fn many_empty_files_end_at_the_memory_limit_whoever_is_killed() {
    let f = Fixture::new();
    let mut plan = f.plan("cd /out && seq 1 3000000 | xargs touch; echo survived");
    plan.limits.memory_bytes = Some(48 << 20);
    plan.timeout = Duration::from_secs(120);
    let r = f.run(&plan);
    assert_eq!(
        r.outcome.status,
        Termination::MemoryExceeded,
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert!(!r.stdout.contains("survived"), "{}", r.stdout);
}

/// `/out`'s entries are bounded by `limits.out_files` (its tmpfs's
/// `nr_inodes`), and a step stopped by it is told apart from a full
/// `/out`: without it, a million empty files cost the caller half a
/// gigabyte of memory to store.
#[test]
fn out_s_entries_are_bounded_and_named() {
    let f = Fixture::new();
    let mut plan = f.plan("cd /out && seq 1 5000 | xargs touch; ls | wc -l; exit 1");
    plan.limits.out_files = Some(1000);
    let r = f.run(&plan);
    assert_eq!(
        r.outcome.status,
        Termination::OutOfFiles { limit: 1000 },
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout.trim(), "1000");
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
    // Exactly the limit fits and succeeds.
    let mut plan = f.plan("cd /out && seq 1 999 | xargs touch && mkdir d");
    plan.limits.out_files = Some(1000);
    assert_exit(&f.run(&plan), 0);
}

/// A writable mount's private copy is a tmpfs with `limits.tmp_bytes`
/// of room, not a directory on the host's disk: writing past it fails,
/// and the end is named.
#[test]
fn a_writable_mount_is_bounded_like_tmp() {
    let f = Fixture::new();
    let src = f.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("input"), vec![b'i'; 256 << 10]).unwrap();
    let mut plan = f.plan(
        "dd if=/dev/zero of=/src/big bs=1024 count=8192 2>&1 | grep -o 'No space left on device'; \
         grep ' /src ' /proc/mounts | cut -d' ' -f3; exit 1",
    );
    plan.mounts.push(Mount {
        target: "/src".into(),
        source: src.clone(),
        writable: true,
    });
    plan.limits.tmp_bytes = Some(1 << 20);
    let r = f.run(&plan);
    assert_eq!(
        r.outcome.status,
        Termination::OutOfSpace {
            mount: Scratch::Writable,
            limit: 1 << 20
        },
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(r.stdout, "No space left on device\ntmpfs\n");
    // The source is untouched.
    let names: Vec<_> = fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["input"]);
}
