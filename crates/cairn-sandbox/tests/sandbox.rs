//! Security tests: every test runs a real sandbox (busybox as the root
//! filesystem) and shows that an attempt to reach outside it fails.
//!
//! Prerequisites: Linux with user namespaces, `/bin/busybox` static
//! (`apt-get install busybox-static`), root for the cgroup tests. Missing
//! prerequisites make tests fail, never skip.

mod common;

use std::fs::{self, File};
use std::path::Path;
use std::time::Duration;

use cairn_sandbox::{run, Mount, Termination};
use common::{assert_exit, host_processes_with, Fixture, BUSYBOX};

#[test]
fn writes_out_and_propagates_exit_code() {
    let f = Fixture::new();
    let r = f.sh("echo hello > /out/greeting; echo to-stdout; echo to-stderr >&2; exit 3");
    assert_exit(&r, 3);
    assert_eq!(fs::read_to_string(r.out("greeting")).unwrap(), "hello\n");
    assert_eq!(r.stdout, "to-stdout\n");
    assert_eq!(r.stderr, "to-stderr\n");
}

#[test]
fn host_files_are_invisible() {
    let f = Fixture::new();
    // Stands for the store: a host dir next to the inputs, never mounted.
    fs::create_dir(f.path("store")).unwrap();
    fs::write(f.path("store/secret"), "s3cret").unwrap();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let script = format!(
        "cat /etc/hostname; cat {store}; ls {home}; ls {tmp}; echo done",
        store = f.path("store/secret").display(),
        tmp = f.path("").display(),
    );
    let r = f.sh(&script);
    assert_exit(&r, 0);
    assert_eq!(r.stdout, "done\n", "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("s3cret"));
    assert_eq!(
        r.stderr.matches("No such file or directory").count(),
        4,
        "{}",
        r.stderr
    );
}

#[test]
fn writes_outside_out_and_tmp_fail_and_writable_copies_stay_private() {
    let f = Fixture::new();
    fs::create_dir(f.path("data")).unwrap();
    fs::write(f.path("data/file"), "original").unwrap();
    let mut plan = f.plan(
        "for p in /x /bin/x /dev/x /proc/x /ro/x; do touch $p 2>/dev/null && echo WROTE $p; done; \
         echo changed > /ro/file || echo ro-refused; \
         echo changed > /data/file && touch /data/new && cat /data/file; \
         touch /tmp/ok /out/ok && echo tmp-and-out-ok",
    );
    plan.mounts.push(Mount {
        target: "/data".into(),
        source: f.path("data"),
        writable: true,
    });
    plan.mounts.push(Mount {
        target: "/ro".into(),
        source: f.path("data"),
        writable: false,
    });
    let r = f.sh_plan(&plan);
    assert_exit(&r, 0);
    assert_eq!(
        r.stdout, "ro-refused\nchanged\ntmp-and-out-ok\n",
        "stderr: {}",
        r.stderr
    );
    assert_eq!(fs::read_to_string(f.path("data/file")).unwrap(), "original");
    assert!(!f.path("data/new").exists());
    assert!(r.out("ok").exists());
    assert!(!f.path("rootfs/x").exists() && !f.path("rootfs/bin/x").exists());
}

#[test]
fn an_unmounted_workdir_is_a_private_writable_tmpfs() {
    let f = Fixture::new();
    // The fixture's workdir is /work, which no mount (nor the root input) has.
    let r = f.sh("echo hi > ./x && cat /work/x && grep -c ' /work tmpfs ' /proc/mounts");
    assert_exit(&r, 0);
    assert_eq!(r.stdout, "hi\n1\n", "stderr: {}", r.stderr);
    assert!(!f.path("rootfs/work").exists());
    let r = f.sh("test -e /work/x && echo LEFT-OVER; touch y && echo writable");
    assert_exit(&r, 0);
    assert_eq!(r.stdout, "writable\n", "stderr: {}", r.stderr);
}

#[test]
fn a_workdir_inside_a_read_only_mount_stays_read_only() {
    let f = Fixture::new();
    fs::create_dir_all(f.path("src/sub")).unwrap();
    let mut plan = f.plan("touch x 2>/dev/null && echo WROTE; pwd");
    plan.mounts.push(Mount {
        target: "/src".into(),
        source: f.path("src"),
        writable: false,
    });
    plan.workdir = "/src/sub".into();
    let r = f.sh_plan(&plan);
    assert_exit(&r, 0);
    assert_eq!(r.stdout, "/src/sub\n", "stderr: {}", r.stderr);
    assert!(!f.path("src/sub/x").exists());
}

#[test]
fn tmp_and_workdir_sizes_are_limited() {
    let f = Fixture::new();
    let mut plan = f.plan(
        "dd if=/dev/zero of=/tmp/small bs=1024 count=512 2>/dev/null && echo small-ok; \
         dd if=/dev/zero of=/tmp/big bs=1024 count=2048 2>/dev/null || echo tmp-full; \
         dd if=/dev/zero of=./big bs=1024 count=2048 2>/dev/null || echo workdir-full",
    );
    plan.limits.tmp_bytes = Some(1 << 20);
    let r = f.sh_plan(&plan);
    assert_exit(&r, 0);
    assert_eq!(
        r.stdout, "small-ok\ntmp-full\nworkdir-full\n",
        "stderr: {}",
        r.stderr
    );
}

#[test]
fn the_step_sees_its_cgroups_as_the_root() {
    let f = Fixture::new();
    let r = f.sh("grep -c . /proc/self/cgroup; grep -v ':/$' /proc/self/cgroup; true");
    assert_exit(&r, 0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "cgroups outside `/`: {}", r.stdout);
    assert!(lines[0].parse::<u32>().unwrap() > 0, "{}", r.stdout);
}

#[test]
fn network_is_loopback_only() {
    let f = Fixture::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "echo hi | nc -w 2 127.0.0.1 {port} && echo HOST-REACHED; \
         wget -q -T 2 -O - http://127.0.0.1:{port}/ && echo HOST-REACHED; \
         wget -q -T 2 -O - http://example.com/ && echo NAME-RESOLVED; \
         nslookup example.com >/dev/null 2>&1 && echo NAME-RESOLVED; \
         ip -o link | grep -c 'LOOPBACK,UP'; ip -o link | wc -l"
    );
    let r = f.sh(&script);
    assert_exit(&r, 0);
    // Exactly one interface, `lo`, and it is up.
    assert_eq!(r.stdout.trim(), "1\n1", "stderr: {}", r.stderr);
    assert!(
        listener.accept().is_err(),
        "the host listener got a connection"
    );
}

#[test]
fn proc_shows_only_sandbox_processes() {
    let f = Fixture::new();
    let r = f.sh("ls /proc | grep -c '^[0-9]'; ls /proc");
    assert_exit(&r, 0);
    let mut lines = r.stdout.lines();
    let count: usize = lines.next().unwrap().parse().unwrap();
    // pid 1 (the sandbox's reaper), sh, ls, grep: a handful at most.
    assert!(count <= 5, "{}", r.stdout);
    let host_pid = std::process::id().to_string();
    assert!(
        !lines.any(|l| l == host_pid),
        "host pid visible: {}",
        r.stdout
    );
}

#[test]
fn environment_is_exactly_the_plan() {
    // Edition 2021: not `unsafe`; no other test reads this variable.
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "fake");
    let f = Fixture::new();
    let mut plan = f.plan("");
    plan.argv = vec!["env".into()];
    plan.env.insert("FOO".into(), "bar".into());
    let r = f.sh_plan(&plan);
    assert_exit(&r, 0);
    assert_eq!(r.stdout, "FOO=bar\nPATH=/bin\n");
    // Pid 1 of the sandbox is a fork of this process: its environ (ours)
    // must be unreadable.
    let r = f.sh("cat /proc/1/environ");
    assert_exit(&r, 1);
    assert!(!r.stdout.contains("AWS"), "{}", r.stdout);
}

#[test]
fn background_processes_die_with_the_step() {
    let f = Fixture::new();
    let r = f.sh("sleep 1000.123 & sleep 0.2; pidof sleep >/dev/null && echo running");
    assert_exit(&r, 0);
    assert_eq!(r.stdout, "running\n", "the sleep must have been running");
    assert_eq!(host_processes_with("1000.123"), Vec::<String>::new());
}

#[test]
fn symlinks_in_inputs_resolve_inside_the_sandbox() {
    let f = Fixture::new();
    fs::create_dir(f.path("src")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", f.path("src/abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/hostname", f.path("src/rel")).unwrap();
    std::os::unix::fs::symlink("/etc", f.path("src/etc")).unwrap();
    let mut plan = f.plan("cat /src/abs; cat /src/rel; ls /src/etc/; echo done");
    plan.mounts.push(Mount {
        target: "/src".into(),
        source: f.path("src"),
        writable: false,
    });
    let r = f.sh_plan(&plan);
    assert_exit(&r, 0);
    assert_eq!(r.stdout, "done\n", "stderr: {}", r.stderr);

    // A mount point through a symlink must not create or mount anything on
    // the host: setup is refused.
    let marker = "cairn-sandbox-escape-test";
    plan.mounts.push(Mount {
        target: format!("/src/etc/{marker}").into(),
        source: f.path("src"),
        writable: false,
    });
    let err = run(
        &plan,
        File::create(f.path("o")).unwrap(),
        File::create(f.path("e")).unwrap(),
    )
    .expect_err("mounting through a symlink must fail");
    assert!(err.to_string().contains("/src/etc"), "{err}");
    assert!(!Path::new("/etc").join(marker).exists());
}

#[test]
fn identity_hostname_and_dev() {
    let f = Fixture::new();
    let r =
        f.sh("hostname; id -u; id -g; ls -a /dev | tr '\\n' ' '; test -e /dev/tty || echo no-tty");
    assert_exit(&r, 0);
    assert_eq!(
        r.stdout,
        "cairn\n1000\n1000\n. .. fd full null random stderr stdin stdout urandom zero no-tty\n",
        "stderr: {}",
        r.stderr
    );
}

#[test]
fn parent_fds_do_not_leak() {
    let f = Fixture::new();
    let file = File::open(BUSYBOX).unwrap();
    // dup() without CLOEXEC: the kind of fd that would leak through exec.
    let _leak = rustix::io::dup(&file).unwrap();
    let mut plan = f.plan("");
    plan.argv = ["ls", "-l", "/proc/self/fd"].map(String::from).to_vec();
    let r = f.sh_plan(&plan);
    assert_exit(&r, 0);
    let fds: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with('l')).collect();
    // 0, 1, 2 and the directory `ls` itself is reading.
    assert_eq!(fds.len(), 4, "{}", r.stdout);
    assert!(!r.stdout.contains("busybox"), "{}", r.stdout);
}

#[test]
fn timeout_kills_the_whole_tree() {
    let f = Fixture::new();
    let mut plan = f.plan("sleep 100.456 & sleep 100.456");
    plan.timeout = Duration::from_secs(1);
    let r = f.sh_plan(&plan);
    assert_eq!(r.outcome.status, Termination::TimedOut);
    assert!(
        r.outcome.duration < Duration::from_secs(4),
        "{:?}",
        r.outcome
    );
    assert_eq!(host_processes_with("100.456"), Vec::<String>::new());
}

#[test]
fn memory_limit_is_enforced_and_reported() {
    let f = Fixture::new();
    let mut plan = f.plan("x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived");
    plan.limits.memory_bytes = Some(64 << 20);
    let r = f.sh_plan(&plan);
    assert_eq!(
        r.outcome.status,
        Termination::MemoryExceeded,
        "stdout: {}",
        r.stdout
    );
}

#[test]
fn process_limit_is_enforced() {
    let f = Fixture::new();
    let mut plan = f.plan("for i in $(seq 20); do sleep 5 & done; echo all-started");
    plan.limits.max_processes = Some(8);
    let r = f.sh_plan(&plan);
    // Reported as the limit, whether the sandbox stopped the step at the
    // first refused fork or the shell gave up (printing "can't fork")
    // first: which comes first is a race.
    assert_eq!(
        r.outcome.status,
        Termination::ProcessLimit,
        "stderr: {}",
        r.stderr
    );
    assert!(!r.stdout.contains("all-started"));
}

const PROBE_ENV: &str = "CAIRN_SANDBOX_PROBE_ABSTRACT";

/// Not a test on its own: when run inside a sandbox with `PROBE_ENV` set, it
/// tries to connect to that abstract unix socket and exits 0 (connected),
/// 1 (connection refused: the name does not exist here) or 2 (other error).
#[test]
fn probe_abstract_connect() {
    use std::os::linux::net::SocketAddrExt;
    let Ok(name) = std::env::var(PROBE_ENV) else {
        return;
    };
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let code = match std::os::unix::net::UnixStream::connect_addr(&addr) {
        Ok(_) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => 1,
        Err(e) => {
            eprintln!("probe: {e}");
            2
        }
    };
    std::process::exit(code);
}

#[test]
fn host_abstract_unix_sockets_are_unreachable() {
    use std::os::linux::net::SocketAddrExt;
    let f = Fixture::new();
    let name = format!("cairn-sandbox-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    // Control: the name is reachable from the host.
    std::os::unix::net::UnixStream::connect_addr(&addr).expect("host can connect");

    // 1. The kernel's list of unix sockets in the sandbox's net namespace.
    let r = f.sh("cat /proc/net/unix");
    assert_exit(&r, 0);
    assert!(r.stdout.starts_with("Num"), "{}", r.stdout);
    assert!(!r.stdout.contains(&name), "{}", r.stdout);

    // 2. A real connect(2) by this test binary run inside the sandbox, with
    // the host's libraries mounted read-only so it can start.
    let exe = std::env::current_exe().unwrap();
    let mut plan = f.plan("");
    for dir in ["/usr", "/lib", "/lib64"] {
        if Path::new(dir).exists() {
            plan.mounts.push(Mount {
                target: dir.into(),
                source: dir.into(),
                writable: false,
            });
        }
    }
    plan.mounts.push(Mount {
        target: "/probe".into(),
        source: exe,
        writable: false,
    });
    plan.argv = [
        "/probe",
        "--exact",
        "probe_abstract_connect",
        "--test-threads=1",
    ]
    .map(String::from)
    .to_vec();
    plan.env.insert(PROBE_ENV.into(), name);
    let r = f.sh_plan(&plan);
    assert_exit(&r, 1);
}

#[test]
fn a_program_written_to_tmp_runs_and_tmp_stays_nosuid_nodev() {
    // What `go test` does: build a binary under /tmp and execute it.
    let f = Fixture::new();
    let r = f.sh("cp /bin/busybox /tmp/echo && /tmp/echo ran-from-tmp; \
         grep ' /tmp ' /proc/mounts | cut -d' ' -f3,4");
    assert_exit(&r, 0);
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some("ran-from-tmp"), "{}", r.stderr);
    let mount = lines.next().unwrap();
    let options: Vec<&str> = mount.split([' ', ',']).collect();
    assert_eq!(options[0], "tmpfs", "{mount}");
    for required in ["nosuid", "nodev"] {
        assert!(options.contains(&required), "{mount}");
    }
    assert!(!options.contains(&"noexec"), "{mount}");
}

/// The step's end is reported before the sandbox is torn down, so `/out`
/// is read while pid 1 may still be exiting: by then nothing of the step
/// may write there any more. A background writer the step left running is
/// killed before the report, not after.
#[test]
fn nothing_the_step_left_running_writes_to_out_after_its_end() {
    let f = Fixture::new();
    let r = f.sh("(while :; do echo tick >> /out/ticks; done) & \
         while [ ! -s /out/ticks ]; do :; done; exit 0");
    assert_exit(&r, 0);
    let size = || fs::metadata(r.out("ticks")).unwrap().len();
    let first = size();
    assert!(first > 0, "the writer never ran");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(size(), first, "/out changed after the step's end");
    assert!(host_processes_with("tick >> /out/ticks").is_empty());
}
