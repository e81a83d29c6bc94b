//! Nothing of the caller reaches a step: its command line, environment,
//! descriptors, keyrings, terminal and rlimits, and pid 1's other windows.

use std::ffi::CString;

use crate::common::{assert_exit, probe_plan, Fixture};
use crate::results;

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
