//! What of the host a step can see: the machine's own files of a fresh
//! `/proc` are covered, its network is its own, and nothing of the
//! sandbox is left open to it.

use std::fs;

use cairn_sandbox::BOOT_ID;

use crate::common::{assert_exit, probe_plan, Fixture};

/// The host's boot id (a machine identifier) and kernel command line
/// (the host's configuration, credentials on some machines) are not
/// shown: the step reads a boot id the same for every step, and an empty
/// command line, and can change neither.
#[test]
fn the_host_s_boot_id_and_kernel_command_line_are_not_shown() {
    let host_boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let host_cmdline = fs::read_to_string("/proc/cmdline").unwrap();
    assert!(
        !host_cmdline.trim().is_empty(),
        "the host has a command line"
    );
    let f = Fixture::new();
    let script = "cat /proc/sys/kernel/random/boot_id; echo \"cmdline=$(cat /proc/cmdline)\"; \
                  (echo x > /proc/cmdline) 2>/dev/null || echo cmdline-read-only; \
                  (echo x > /proc/sys/kernel/random/boot_id) 2>/dev/null || echo boot-id-read-only";
    let first = f.sh(script);
    assert_exit(&first, 0);
    assert_eq!(
        first.stdout,
        format!("{BOOT_ID}\ncmdline=\ncmdline-read-only\nboot-id-read-only\n"),
        "{}",
        first.stderr
    );
    assert!(!first.stdout.contains(host_boot_id.trim()));
    // Read, not refused: the command line is empty.
    assert_eq!(first.stderr, "");
    // The same for the next step.
    assert_eq!(f.sh(script).stdout, first.stdout);
}

/// A listener in the host's abstract unix socket namespace (which needs
/// no file to reach, and belongs to the network namespace) is out of
/// reach: the step's network namespace is its own.
#[test]
fn the_host_s_abstract_unix_sockets_are_out_of_reach() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("cairn-test-abstract-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    // The control: the host reaches it.
    std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
    let f = Fixture::new();
    let r = f.run(&probe_plan(&f, &["abstract", &name]));
    assert_exit(&r, 0);
    assert!(
        r.stdout.starts_with("connect: ECONNREFUSED"),
        "{}",
        r.stdout
    );
    drop(listener);
}

/// The step's own descriptors are its standard streams: nothing of the
/// sandbox's machinery (status socket, cgroup files, pidfds) is left open
/// past `execve`.
#[test]
fn a_step_holds_no_descriptor_but_its_standard_streams() {
    let f = Fixture::new();
    // `ls` lists its own directory descriptor too: 3.
    let r = f.sh("ls /proc/self/fd; ls -l /proc/self/fd/ | grep -c socket");
    assert_eq!(r.stdout, "0\n1\n2\n3\n0\n", "{}", r.stderr);
}
