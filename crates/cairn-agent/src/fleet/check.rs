//! A `check` gate's command, run by the steward before a wave: passed when
//! it exits 0 within its timeout; killed when the timeout ends.

use std::time::Duration;

/// Runs a gate's check command; whether it exited 0 within `timeout`.
pub(super) async fn run(command: &[String], timeout: Duration) -> bool {
    let Some((program, args)) = command.split_first() else {
        return false;
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("gate check {program}: {e}");
            return false;
        }
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        Ok(Err(e)) => {
            tracing::warn!("gate check {program}: {e}");
            false
        }
        Err(_) => {
            tracing::warn!("gate check {program}: timed out after {timeout:?}");
            false
        }
    }
}
