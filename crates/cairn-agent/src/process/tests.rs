//! Real processes: gating, passed fds, exec failures, stopping a group.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use super::spawn::{fork, Launch, SpawnError};
use super::*;

fn pipe() -> (std::fs::File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new fds we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    use std::os::fd::FromRawFd;
    // SAFETY: both fds are new and ours.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

fn sh<'a>(script: &str, output: std::os::fd::BorrowedFd<'a>) -> Launch<'a> {
    Launch {
        program: "/bin/sh".into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: "/".into(),
        fds: Vec::new(),
        output,
        credentials: None,
        read_only: None,
    }
}

#[tokio::test]
async fn a_released_child_gets_its_sockets_and_listen_pid() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut out, w) = pipe();
    let mut launch = sh(
        "echo \"$LISTEN_PID $$\"; readlink /proc/self/fd/3; test -e /proc/self/fd/4 || echo closed",
        w.as_fd(),
    );
    launch.fds = vec![listener.as_fd()];
    let forked = fork(&launch).unwrap();
    let process = ServiceProcess::forked(forked.pid).unwrap();
    forked.release().unwrap();
    drop(launch);
    drop(w);
    let mut text = String::new();
    out.read_to_string(&mut text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let pids: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(
        pids[0], pids[1],
        "LISTEN_PID is the child's own pid: {text}"
    );
    assert_eq!(pids[0], process.pid().to_string());
    assert!(lines[1].starts_with("socket:["), "{text}");
    assert_eq!(lines[2], "closed", "no other fd is inherited: {text}");
    assert_eq!(process.exited().await.as_deref(), Some("exit status 0"));
    assert!(!process.is_running());
}

#[tokio::test]
async fn an_aborted_child_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let (_out, w) = pipe();
    let script = format!("touch {}", marker.display());
    let forked = fork(&sh(&script, w.as_fd())).unwrap();
    forked.abort();
    assert!(!marker.exists());
}

#[tokio::test]
async fn a_child_that_cannot_exec_says_why() {
    let (_out, w) = pipe();
    let mut launch = sh("", w.as_fd());
    launch.program = "/nonexistent/program".into();
    let err = fork(&launch).unwrap().release().unwrap_err();
    assert!(
        matches!(err, SpawnError::Child { stage: "exec", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("No such file"), "{err}");
    launch.program = "/bin/sh".into();
    launch.cwd = Path::new("/nonexistent").into();
    let err = fork(&launch).unwrap().release().unwrap_err();
    assert!(
        err.to_string()
            .contains("changing to the generation directory"),
        "{err}"
    );
}

#[tokio::test]
async fn stop_escalates_to_the_whole_group() {
    let (mut out, w) = pipe();
    // A shell that ignores TERM, with a background child in its group.
    let launch = sh("trap '' TERM; sleep 60 & echo $!; wait", w.as_fd());
    let forked = fork(&launch).unwrap();
    let process = ServiceProcess::forked(forked.pid).unwrap();
    forked.release().unwrap();
    drop(launch);
    drop(w);
    let mut line = [0u8; 16];
    let n = out.read(&mut line).unwrap();
    let sleeper: i32 = std::str::from_utf8(&line[..n])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stopped = process
        .stop(libc::SIGTERM, Duration::from_millis(300))
        .await;
    assert_eq!(stopped, Stopped::Killed);
    // The background child was killed with its group (give the kernel a
    // moment to deliver).
    let sleeper = Identity::of(sleeper);
    for _ in 0..50 {
        if !sleeper.as_ref().is_ok_and(Identity::is_alive) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!sleeper.as_ref().is_ok_and(Identity::is_alive));
}

#[tokio::test]
async fn adoption_needs_the_same_process() {
    let (_out, w) = pipe();
    let forked = fork(&sh("sleep 60", w.as_fd())).unwrap();
    let process = ServiceProcess::forked(forked.pid).unwrap();
    forked.release().unwrap();
    let adopted = ServiceProcess::adopt(&process.identity).expect("alive");
    assert_eq!(adopted.pid(), process.pid());
    let mut wrong = process.identity.clone();
    wrong.start_time += 1;
    assert!(ServiceProcess::adopt(&wrong).is_none());
    let held = adopted.pidfd().get_fd(w.as_raw_fd());
    assert!(held.is_err(), "the child closed every fd but 0-2");
    process.stop(libc::SIGTERM, Duration::from_secs(5)).await;
    assert!(ServiceProcess::adopt(&process.identity).is_none());
}
