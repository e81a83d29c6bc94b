//! Hosts made of Linux network namespaces, for tests of several machines
//! talking over a network: one namespace is the switch (a bridge), every
//! host is a namespace of its own joined to it by a veth pair, with a
//! private address in `10.231.N.0/24` (N counts the networks a test run
//! made) that exists only inside these namespaces, and loopback up.
//!
//! Processes run on a host through `ip netns exec HOST` ([`Host::launcher`]);
//! the test itself reaches a host's addresses from a thread that entered
//! the host's namespace ([`Host::run`]). A host is cut off by setting its
//! port on the switch down ([`Host::cut`]) and joined again
//! ([`Host::reconnect`]).
//!
//! When the [`Net`] drops, even after a panic, every process still in one
//! of its namespaces is killed by its pid and every namespace is deleted.
//! Names carry the creating process's pid, so runs never collide, and a
//! new network first deletes those left by runs whose process is gone
//! (a killed test run cannot clean up after itself).
//!
//! Needs root and `ip` (iproute2); without either it fails, never skips.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

/// What every namespace name of these tests starts with.
const PREFIX: &str = "cairnt-";

/// Networks made by this process (the third octet of their addresses).
static NETWORKS: AtomicU8 = AtomicU8::new(0);

/// A switch and the hosts on it.
pub struct Net {
    /// The hosts, in the order made (`hosts[i]` has address `.{i + 1}`).
    pub hosts: Vec<Host>,
    switch: String,
    /// Every namespace made so far, deleted on drop.
    made: Vec<String>,
}

/// One host: a network namespace with an address on the switch.
#[derive(Clone)]
pub struct Host {
    /// The namespace's name.
    pub name: String,
    /// Its private address.
    pub ip: Ipv4Addr,
    switch: String,
    /// Its port on the switch (a veth in the switch's namespace).
    port: String,
}

/// Runs `ip ARGS`; panics with its stderr if it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2 is required)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Fails the test, with what is missing, unless it runs as root with `ip`.
pub fn check_prerequisites() {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "multi-host tests make network namespaces and need root (euid is {euid})"
    );
    let ok = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "multi-host tests need `ip` (apt-get install iproute2)");
}

impl Net {
    /// A switch with `hosts` hosts on it.
    pub fn new(hosts: usize) -> Self {
        check_prerequisites();
        sweep_stale();
        assert!(hosts < 250, "at most 249 hosts on a /24");
        let n = NETWORKS.fetch_add(1, Ordering::SeqCst);
        let base = format!("{PREFIX}{}-{n}", std::process::id());
        let switch = format!("{base}-sw");
        let mut net = Self {
            hosts: Vec::new(),
            switch: switch.clone(),
            made: Vec::new(),
        };
        net.add_namespace(&switch);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for i in 0..hosts {
            let name = format!("{base}-h{i}");
            net.add_namespace(&name);
            let port = format!("p{i}");
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &name,
            ]);
            ip(&["-n", &switch, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &switch, "link", "set", &port, "up"]);
            let host_ip = Ipv4Addr::new(10, 231, n, i as u8 + 1);
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{host_ip}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &name, "link", "set", "eth0", "up"]);
            net.hosts.push(Host {
                name,
                ip: host_ip,
                switch: switch.clone(),
                port,
            });
        }
        net
    }

    fn add_namespace(&mut self, name: &str) {
        ip(&["netns", "add", name]);
        self.made.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            remove_namespace(name);
        }
    }
}

/// Kills every process in namespace `name` (by pid) and deletes it.
fn remove_namespace(name: &str) {
    // A killed process can leave children behind for a moment; twice.
    for _ in 0..2 {
        for pid in pids_in(name) {
            // SAFETY: kill(2) on a process in the test's own namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = Command::new("ip").args(["netns", "del", name]).status();
}

/// The pids of the processes in namespace `name`.
fn pids_in(name: &str) -> Vec<i32> {
    let out = Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Deletes the namespaces of earlier runs whose process is gone.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !Path::new("/proc").join(pid).exists() {
            remove_namespace(&name);
        }
    }
}

impl Host {
    /// The command that runs another on this host: `ip netns exec NAME`.
    pub fn launcher(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name]
            .map(String::from)
            .to_vec()
    }

    /// [`Host::launcher`] as `&str`s.
    pub fn launcher_str(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    /// `program` to be run on this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread inside this host's network namespace (sockets
    /// it opens are the host's), and returns what it returns.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let ns = File::open(Path::new("/run/netns").join(&self.name))
            .unwrap_or_else(|e| panic!("opening namespace {}: {e}", self.name));
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns(2) on this thread only, with an open
                // namespace file; a network namespace may be entered by
                // one thread of a multi-threaded process.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns into {}", self.name);
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Cuts the host off the network: its port on the switch goes down.
    pub fn cut(&self) {
        ip(&["-n", &self.switch, "link", "set", &self.port, "down"]);
    }

    /// Joins the host to the network again.
    pub fn reconnect(&self) {
        ip(&["-n", &self.switch, "link", "set", &self.port, "up"]);
    }
}
