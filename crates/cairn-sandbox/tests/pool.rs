//! The cgroup pool shrinks: idle entries are removed, and an entry a
//! running step holds, one whose lock is held or one that holds a process
//! never is. Needs root and the cgroup v1 memory, pids and freezer
//! hierarchies, as CI has.

mod common;

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_sandbox::{pool_kept, remove_idle_cgroups, Mount, Plan};
use common::{assert_exit, Fixture};

const CONTROLLERS: [&str; 3] = ["memory", "pids", "freezer"];

fn dirs(name: &str) -> Vec<PathBuf> {
    CONTROLLERS
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join(name))
        .collect()
}

/// The two tests sweep: one at a time, so that one's sweeps do not take
/// the entries the other makes by hand.
static SWEEPING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A pool entry made by hand, numbered out of the way of real ones, and
/// its lock, held (as a sandbox holds it).
fn make_entry(n: u64) -> (String, File) {
    let name = format!("cairn-sandbox-pool-{n}");
    let dirs = dirs(&name);
    fs::create_dir_all(&dirs[0]).unwrap();
    let lock = File::open(&dirs[0]).unwrap();
    // SAFETY: flock on a descriptor this function owns.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    for d in &dirs[1..] {
        fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    }
    (name, lock)
}

/// The pool entry (its memory cgroup's name) a host process is in.
fn entry_of(pid: u32) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| l.split_once(":memory:/").map(|(_, p)| p.to_string()))
        .unwrap_or_else(|| panic!("no memory cgroup: {text}"))
}

/// The host pid of the process whose command line contains `marker`.
fn wait_for_process(marker: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(marker) {
                if let Ok(pid) = e.file_name().to_string_lossy().parse() {
                    return pid;
                }
            }
        }
        assert!(Instant::now() < deadline, "{marker} never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plan with a memory and a process limit (so it needs the cgroups).
fn limited(f: &Fixture, script: &str) -> Plan {
    let mut plan = f.plan(script);
    plan.limits.memory_bytes = Some(64 << 20);
    plan.limits.max_processes = Some(32);
    plan
}

#[test]
fn idle_entries_are_removed_and_held_or_busy_ones_never_are() {
    assert_eq!(rustix::process::geteuid().as_raw(), 0, "needs root");
    let _one_at_a_time = SWEEPING.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::new();
    // A step that runs until told to stop, holding its entry.
    let gate = f.path("gate");
    fs::create_dir_all(&gate).unwrap();
    let mut plan = limited(
        &f,
        "while [ ! -e /gate/go ]; do sleep 0.05; done; echo 8.7621 >/dev/null; echo done",
    );
    plan.mounts.push(Mount {
        target: "/gate".into(),
        source: gate.clone(),
        writable: false,
    });
    plan.timeout = Duration::from_secs(60);
    let step = std::thread::scope(|s| {
        let running = s.spawn(|| f.run(&plan));
        let held = entry_of(wait_for_process("8.7621"));

        let base = 1_000_000 + 3 * u64::from(std::process::id() % 100_000);
        let (idle, idle_lock) = make_entry(base);
        let (locked, lock) = make_entry(base + 1);
        let (occupied, occupied_lock) = make_entry(base + 2);
        let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
        fs::write(
            dirs(&occupied)[1].join("cgroup.procs"),
            sleeper.id().to_string(),
        )
        .unwrap();
        drop((idle_lock, occupied_lock));

        let swept = remove_idle_cgroups();
        assert!(swept.removed.contains(&idle), "{swept:?}");
        assert!(dirs(&idle).iter().all(|d| !d.exists()), "{idle} is left");
        for kept in [&held, &locked, &occupied] {
            assert!(!swept.removed.contains(kept), "{kept} removed: {swept:?}");
            assert!(dirs(kept)[0].exists(), "{kept} is gone");
        }
        assert!(swept.busy.contains(&held), "{swept:?}");

        // The held entry still works: its step ends normally.
        fs::write(gate.join("go"), "").unwrap();
        let step = running.join().unwrap();
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        drop(lock);
        for d in dirs(&locked).into_iter().chain(dirs(&occupied)).rev() {
            fs::remove_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
        step
    });
    assert_exit(&step, 0);
    assert_eq!(step.stdout, "done\n");
}

/// A step that finds the first [`pool_kept`] entries busy takes one past
/// them, which goes when its sandbox ends: a burst leaves nothing.
#[test]
fn an_entry_past_the_kept_ones_goes_with_its_sandbox() {
    let _one_at_a_time = SWEEPING.lock().unwrap_or_else(|e| e.into_inner());
    // Hold the kept entries (those another sandbox holds are busy anyway).
    let held: Vec<File> = (0..pool_kept())
        .filter_map(|n| {
            let first = dirs(&format!("cairn-sandbox-pool-{n}")).remove(0);
            fs::create_dir_all(&first).unwrap();
            let lock = File::open(&first).unwrap();
            // SAFETY: flock on a descriptor this closure owns.
            let r = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            (r == 0).then_some(lock)
        })
        .collect();
    let f = Fixture::new();
    let gate = f.path("gate");
    fs::create_dir_all(&gate).unwrap();
    let mut plan = limited(
        &f,
        "while [ ! -e /gate/go ]; do sleep 0.05; done; echo 5.3317 >/dev/null; echo done",
    );
    plan.mounts.push(Mount {
        target: "/gate".into(),
        source: gate.clone(),
        writable: false,
    });
    plan.timeout = Duration::from_secs(60);
    let (entry, step) = std::thread::scope(|s| {
        let running = s.spawn(|| f.run(&plan));
        let entry = entry_of(wait_for_process("5.3317"));
        fs::write(gate.join("go"), "").unwrap();
        (entry, running.join().unwrap())
    });
    let n: usize = entry.rsplit('-').next().unwrap().parse().unwrap();
    assert!(n >= pool_kept(), "{entry} is a kept one");
    assert!(
        dirs(&entry)[0].exists(),
        "{entry} went while its step's outcome is held"
    );
    assert_exit(&step, 0);
    drop(step);
    for d in dirs(&entry) {
        assert!(!d.exists(), "{} is left", d.display());
    }
    drop(held);
}

/// Sweeps racing steps that take and give back entries: every step still
/// runs in an entry of its own and ends normally.
#[test]
fn steps_run_normally_while_the_pool_is_swept() {
    let _one_at_a_time = SWEEPING.lock().unwrap_or_else(|e| e.into_inner());
    let stop = std::sync::atomic::AtomicBool::new(false);
    /// Stops the sweeper however the workers end, so a failing one fails
    /// the test instead of leaving it sweeping for ever.
    struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let sweeper = s.spawn(|| {
            let mut sweeps = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                remove_idle_cgroups();
                sweeps += 1;
            }
            sweeps
        });
        let stopping = Stop(&stop);
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let f = Fixture::new();
                    let plan = limited(&f, "echo ok");
                    for _ in 0..8 {
                        let r = f.run(&plan);
                        assert_exit(&r, 0);
                        assert_eq!(r.stdout, "ok\n");
                    }
                })
            })
            .collect();
        let ended: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        drop(stopping);
        assert!(sweeper.join().unwrap() > 0);
        for e in ended {
            e.expect("a worker's steps failed");
        }
    });
}
