//! Hooks: operator commands run around a swap (`[hooks]` in agent.toml).
//!
//! `pre_swap` runs before the new process starts and can veto the swap (a
//! non-zero exit or a timeout aborts it cleanly: nothing was switched);
//! `post_swap` runs after the old process stopped; `on_rollback` after a
//! failed release was rolled back. Their failures after the fact are
//! reported, not acted on. A hook runs as the agent's user (it is the
//! operator's command, not the release's), in the state directory, with
//! the agent's environment, less the store's credentials
//! ([`STORE_CREDENTIALS`]: a hook needs no access to the store, and a
//! store token would let it promote or write fleet records), plus:
//!
//! | variable | value |
//! |---|---|
//! | `CAIRN_HOOK` | `pre_swap`, `post_swap` or `on_rollback` |
//! | `CAIRN_SERVICE`, `CAIRN_CHANNEL`, `CAIRN_SET`, `CAIRN_AGENT_ID` | who |
//! | `CAIRN_OLD_RELEASE`, `CAIRN_OLD_VERSION`, `CAIRN_OLD_GENERATION` | what ran (empty if nothing) |
//! | `CAIRN_NEW_RELEASE`, `CAIRN_NEW_VERSION`, `CAIRN_NEW_GENERATION` | what is (or was) coming |
//! | `CAIRN_REASON` | why, for `on_rollback` |
//!
//! On timeout the hook's whole process group is killed.

use std::path::Path;
use std::time::Duration;

/// Variables of the agent's environment a hook never sees: the store's
/// credentials (a token, S3 keys).
pub const STORE_CREDENTIALS: &[&str] = &[
    "CAIRN_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Why a hook failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// It could not be started.
    #[error("hook {hook} could not run: {reason}")]
    Start {
        /// Which hook.
        hook: String,
        /// Why.
        reason: String,
    },
    /// It exited non-zero.
    #[error("hook {hook} failed ({status}): {stderr}")]
    Failed {
        /// Which hook.
        hook: String,
        /// Its exit status.
        status: String,
        /// The last line of its stderr.
        stderr: String,
    },
    /// It ran too long and was killed.
    #[error("hook {hook} did not finish within {timeout:?} and was killed")]
    TimedOut {
        /// Which hook.
        hook: String,
        /// The limit.
        timeout: Duration,
    },
}

/// Runs hook `name` (`argv`) in `cwd` with `env` added, for at most `timeout`.
pub async fn run(
    name: &str,
    argv: &[String],
    cwd: &Path,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(), HookError> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(cwd);
    for var in STORE_CREDENTIALS {
        cmd.env_remove(var);
    }
    cmd.env("CAIRN_HOOK", name)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| HookError::Start {
        hook: name.into(),
        reason: format!("{}: {e}", argv[0]),
    })?;
    let pgid = child.id().map(|p| p as i32);
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(HookError::Failed {
            hook: name.into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect(),
        }),
        Ok(Err(e)) => Err(HookError::Start {
            hook: name.into(),
            reason: e.to_string(),
        }),
        Err(_) => {
            if let Some(pgid) = pgid {
                crate::process::kill_group(pgid, libc::SIGKILL);
            }
            Err(HookError::TimedOut {
                hook: name.into(),
                timeout,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn hooks_see_their_environment_and_fail_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let env = [("CAIRN_NEW_VERSION".to_string(), "2.0".to_string())];
        let t = Duration::from_secs(5);
        run(
            "pre_swap",
            &sh("echo $CAIRN_HOOK $CAIRN_NEW_VERSION > seen"),
            dir.path(),
            &env,
            t,
        )
        .await
        .unwrap();
        let seen = std::fs::read_to_string(dir.path().join("seen")).unwrap();
        assert_eq!(seen, "pre_swap 2.0\n");
        let err = run(
            "pre_swap",
            &sh("echo no way >&2; exit 4"),
            dir.path(),
            &env,
            t,
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "hook pre_swap failed (exit status: 4): no way"
        );
        let err = run(
            "post_swap",
            &sh("sleep 30"),
            dir.path(),
            &env,
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HookError::TimedOut { .. }), "{err}");
        let err = run("x", &["/nonexistent".to_string()], dir.path(), &env, t)
            .await
            .unwrap_err();
        assert!(matches!(err, HookError::Start { .. }), "{err}");
    }
}
