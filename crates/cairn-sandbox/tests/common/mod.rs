//! What the sandbox tests share: a busybox root, a plan, a run.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_sandbox::{run, Limits, Mount, Outcome, Plan, Termination};
use tempfile::TempDir;

pub const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "cat", "ls", "echo", "sleep", "wget", "nc", "id", "hostname", "env", "ps", "head", "tr",
    "touch", "seq", "test", "stat", "pidof", "mkdir", "rm", "readlink", "grep", "wc", "nslookup",
    "true", "false", "dd", "cp", "chmod", "truncate", "kill", "cut", "od", "httpd", "xargs",
];

/// A scratch area: a busybox rootfs, an out dir, log files.
pub struct Fixture {
    dir: TempDir,
}

pub struct Ran {
    pub outcome: Outcome,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// A path in the step's `/out` (valid while `self` lives).
    pub fn out(&self, rel: &str) -> PathBuf {
        self.outcome.out.path().expect("/out was sent").join(rel)
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("rootfs/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::copy(BUSYBOX, bin.join("busybox")).expect("busybox-static must be installed");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(a)).unwrap();
        }
        Fixture { dir }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn plan(&self, script: &str) -> Plan {
        Plan {
            mounts: vec![Mount {
                target: "/".into(),
                source: self.path("rootfs"),
                writable: false,
            }],
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: BTreeMap::from([("PATH".into(), "/bin".into())]),
            workdir: "/work".into(),
            hostname: "cairn".into(),
            timeout: Duration::from_secs(10),
            limits: Limits::default(),
            services: Vec::new(),
            emulator: None,
        }
    }

    pub fn run(&self, plan: &Plan) -> Ran {
        let (o, e) = (self.path("stdout.log"), self.path("stderr.log"));
        let outcome = run(plan, File::create(&o).unwrap(), File::create(&e).unwrap())
            .expect("sandbox must start");
        Ran {
            outcome,
            stdout: fs::read_to_string(o).unwrap(),
            stderr: fs::read_to_string(e).unwrap(),
        }
    }

    pub fn sh(&self, script: &str) -> Ran {
        self.run(&self.plan(script))
    }

    pub fn sh_plan(&self, plan: &Plan) -> Ran {
        self.run(plan)
    }
}

#[track_caller]
pub fn assert_exit(r: &Ran, code: i32) {
    assert_eq!(
        r.outcome.status,
        Termination::Exited(code),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
}

/// Command lines of host processes containing `marker`.
pub fn host_processes_with(marker: &str) -> Vec<String> {
    let mut found = vec![];
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(cmd);
            }
        }
    }
    found
}

/// `plan` with the host's libraries mounted read-only, so a dynamically
/// linked host program (the probe) can run in it.
pub fn with_host_libs(mut plan: Plan) -> Plan {
    for dir in ["/usr", "/lib", "/lib64"] {
        if Path::new(dir).exists() {
            plan.mounts.push(Mount {
                target: dir.into(),
                source: dir.into(),
                writable: false,
            });
        }
    }
    plan
}

/// A plan running the hostile probe (`src/bin/cairn-sandbox-probe.rs`)
/// with `args`.
pub fn probe_plan(f: &Fixture, args: &[&str]) -> Plan {
    let mut plan = with_host_libs(f.plan(""));
    plan.mounts.push(Mount {
        target: "/probe".into(),
        source: env!("CARGO_BIN_EXE_cairn-sandbox-probe").into(),
        writable: false,
    });
    plan.argv = std::iter::once("/probe")
        .chain(args.iter().copied())
        .map(String::from)
        .collect();
    plan
}
