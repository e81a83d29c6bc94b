//! What a step may use up: `/out`, `/tmp` and writable mounts, processes,
//! its log, kernel memory, `/out`'s entries; each end named with its limit.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use cairn_sandbox::{Mount, Scratch, Termination};

use crate::common::{assert_exit, host_processes_with, probe_plan, Fixture};

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

/// Socket buffers nobody reads are kernel memory the step holds: a unix
/// socket pair's are charged to its memory limit, which ends the step,
/// named. (Loopback TCP buffers are not, on cgroup v1: see the threat
/// model.)
#[test]
fn unix_socket_buffers_count_against_the_memory_limit() {
    let f = Fixture::new();
    let mut plan = probe_plan(&f, &["sockets", "unix", "256"]);
    plan.limits.memory_bytes = Some(64 << 20);
    plan.limits.open_files = Some(20_000);
    plan.timeout = Duration::from_secs(60);
    let r = f.run(&plan);
    assert_eq!(
        r.outcome.status,
        Termination::MemoryExceeded,
        "{}{}",
        r.stdout,
        r.stderr
    );
}
