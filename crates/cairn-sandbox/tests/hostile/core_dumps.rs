//! A crashing step never starts the host's core-dump handler. With a
//! `kernel.core_pattern` that is a pipe (`|/usr/lib/systemd/systemd-coredump
//! ...`, apport), the kernel runs the handler, as root, for every crash
//! whatever the core limit, except a limit of exactly 1 byte. The step's
//! limit is 1 and the filter refuses to change it.
//!
//! The test sets a pipe pattern of its own for its duration (a handler
//! that records each crash's executable), holding a lock file so that no
//! other test changes the pattern meanwhile, and restores the original
//! when it ends, on failure too; a run killed before restoring leaves the
//! original saved beside the lock, and the next run restores it first.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_sandbox::Termination;

use crate::common::{probe_plan, Fixture};
use crate::results;

const PATTERN: &str = "/proc/sys/kernel/core_pattern";
const LOCK: &str = "/run/cairn-test-core-pattern.lock";
const SAVED: &str = "/run/cairn-test-core-pattern.saved";

/// The host's core pattern, replaced by a pipe to a recording handler
/// while this lives.
struct PipePattern {
    original: String,
    record: PathBuf,
    _lock: File,
}

impl PipePattern {
    fn install(dir: &Path) -> PipePattern {
        let lock = File::create(LOCK).unwrap();
        // SAFETY: flock on a descriptor this function owns.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        if let Ok(saved) = fs::read_to_string(SAVED) {
            fs::write(PATTERN, saved).unwrap();
        }
        let original = fs::read_to_string(PATTERN).unwrap();
        let original = original.trim_end_matches('\n').to_string();
        fs::write(SAVED, &original).unwrap();
        let (handler, record) = (dir.join("handler"), dir.join("record"));
        fs::write(
            &handler,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\nexec cat > /dev/null\n",
                record.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&handler, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(PATTERN, format!("|{} %E %s", handler.display())).unwrap();
        PipePattern {
            original,
            record,
            _lock: lock,
        }
    }

    /// The `<executable> <signal>` lines the handler recorded.
    fn recorded(&self) -> Vec<String> {
        let text = fs::read_to_string(&self.record).unwrap_or_default();
        text.lines().map(String::from).collect()
    }
}

impl Drop for PipePattern {
    fn drop(&mut self) {
        fs::write(PATTERN, &self.original).expect("restoring kernel.core_pattern");
        let _ = fs::remove_file(SAVED);
    }
}

/// Crashes the probe on the host, outside any sandbox, with a core limit
/// of 0, and waits for the handler to record it: the pattern works, and
/// everything recorded before has been.
fn crash_on_the_host(pattern: &PipePattern, round: u32) {
    let mut probe = Command::new(env!("CARGO_BIN_EXE_cairn-sandbox-probe"));
    probe.args(["crash", "segv"]);
    // SAFETY: setrlimit only, between fork and exec.
    unsafe {
        probe.pre_exec(|| {
            let zero = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &zero);
            Ok(())
        });
    }
    let before = pattern
        .recorded()
        .iter()
        .filter(|l| l.contains("cairn-sandbox-probe"))
        .count();
    let status = probe.output().unwrap().status;
    assert!(!status.success(), "round {round}: {status:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = pattern.recorded();
        if now
            .iter()
            .filter(|l| l.contains("cairn-sandbox-probe"))
            .count()
            > before
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "round {round}: the host crash was never recorded: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_crashing_step_never_starts_the_host_s_core_handler() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "setting kernel.core_pattern needs root"
    );
    let f = Fixture::new();
    let pattern = PipePattern::install(&f.path(""));
    crash_on_the_host(&pattern, 1);

    let mut ran = Vec::new();
    for (how, signal) in [("segv", libc::SIGSEGV), ("abort", libc::SIGABRT)] {
        let r = f.run(&probe_plan(&f, &["crash", how]));
        assert_eq!(
            r.outcome.status,
            Termination::Signaled(signal),
            "{how}: {}{}",
            r.stdout,
            r.stderr
        );
        ran.push(r);
    }

    // Whatever the sandboxed crashes started would have recorded before
    // this one, which the handler records.
    crash_on_the_host(&pattern, 2);
    let from_steps: Vec<String> = pattern
        .recorded()
        .into_iter()
        .filter(|l| {
            l.split(' ')
                .next()
                .is_some_and(|exe| exe.ends_with("!probe"))
        })
        .collect();
    assert_eq!(
        from_steps,
        Vec::<String>::new(),
        "the handler ran for a step"
    );

    // The step could not lower its limit, by any call.
    for r in &ran {
        let got = results(r);
        for call in [
            "setrlimit(CORE, 0)",
            "setrlimit(CORE, high bits)",
            "prlimit64(0, CORE, 0)",
            "prlimit64(0, CORE high bits, 0)",
        ] {
            let result = got.get(call).map_or("not tried", String::as_str);
            assert!(result.starts_with("EPERM"), "{call}: {}", r.stdout);
        }
        assert!(got["prlimit64(0, CORE, read)"].starts_with("ok"));
        assert_eq!(got["core limit"], "1 1", "{}", r.stdout);
    }
}
