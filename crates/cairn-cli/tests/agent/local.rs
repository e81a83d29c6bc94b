//! A local user of the agent's machine: what it may read or change of
//! the agent, and what the processes the agent starts inherit from it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::fixture::fixture;
use crate::harness::{eventually, Options, TestAgent};
use crate::refusals::refused_at_start;

const T: Duration = Duration::from_secs(30);

/// A store credential the agent is started with.
const SECRET: &str = "probe-secret-4f1c";

#[test]
fn a_state_directory_others_may_change_is_refused_at_start() {
    let fx = fixture();
    for (name, mode) in [("state-0777", 0o777), ("state-0775", 0o775)] {
        let state = fx.root.join("tests").join(format!("{name}-dir"));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(mode)).unwrap();
        let options = Options {
            state_dir: Some(state.clone()),
            ..Options::default()
        };
        let err = refused_at_start(name, options, |t| t.into(), &[]);
        assert!(
            err.starts_with(&format!(
                "error: state directory {} is writable by group or others (mode {mode:04o}; chmod go-w it)",
                state.display()
            )),
            "{err}"
        );
        assert!(!state.join("lock").exists(), "nothing written into it");
    }

    // Owned by another user (nobody), even if only that user may write.
    let state = fx.root.join("tests/state-nobody-dir");
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let options = Options {
        state_dir: Some(state.clone()),
        ..Options::default()
    };
    let err = refused_at_start("state-nobody", options, |t| t.into(), &[]);
    assert!(
        err.contains(&format!(
            "state directory {} is owned by uid 65534, not by the agent's uid 0",
            state.display()
        )),
        "{err}"
    );
}

#[test]
fn a_state_directory_others_may_swap_out_is_refused_at_start() {
    let fx = fixture();
    // Another user may rename what is in `open` (0777, not sticky): the
    // state directory itself, or a symlink to a safe one.
    let open = fx.root.join("tests/open-parent-dir");
    let _ = std::fs::remove_dir_all(&open);
    std::fs::create_dir_all(open.join("state")).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let safe = fx.root.join("tests/safe-target-dir");
    let _ = std::fs::remove_dir_all(&safe);
    std::fs::create_dir_all(&safe).unwrap();
    let _ = std::fs::remove_file(open.join("link"));
    std::os::unix::fs::symlink(&safe, open.join("link")).unwrap();
    for (name, state) in [
        ("state-open-parent", open.join("state")),
        ("state-open-link", open.join("link")),
        ("state-open-new", open.join("not-yet/state")),
    ] {
        let options = Options {
            state_dir: Some(state.clone()),
            ..Options::default()
        };
        let err = refused_at_start(name, options, |t| t.into(), &[]);
        assert!(
            err.starts_with(&format!(
                "error: state directory {} is under {}, which is writable by group or others and not sticky (mode 0777; chmod go-w it)",
                state.display(),
                open.display()
            )),
            "{err}"
        );
        assert!(
            !state.join("lock").exists(),
            "{name}: nothing written into it"
        );
    }
    assert!(!open.join("not-yet").exists(), "nothing made under it");
}

#[test]
fn a_token_in_an_agent_toml_others_may_read_is_refused_at_start() {
    let config = fixture().root.join("tests/token-readable/agent.toml");
    let options = Options {
        token: Some("cairn_probe-token".into()),
        ..Options::default()
    };
    // The harness writes it 0600; made readable before the agent reads it.
    let err = refused_at_start(
        "token-readable",
        options,
        |t| {
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
            t.into()
        },
        &[],
    );
    assert!(
        err.starts_with(&format!(
            "error: {} holds a store token (`token`) and must not be accessible by group or others",
            config.display()
        )),
        "{err}"
    );
}

/// `/proc/<pid>/environ` of every process whose command line contains
/// all of `words`.
fn environs_of(words: &[&str]) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if words.iter().all(|w| cmdline.contains(w)) {
            let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&environ).replace('\0', "\n")));
        }
    }
    found
}

#[test]
fn hooks_the_log_pump_and_the_service_never_see_the_store_credentials() {
    let fx = fixture();
    let name = "no-secrets";
    let seen = fx.root.join("tests").join(format!("{name}-hook-env"));
    let _ = std::fs::remove_file(&seen);
    let hook = format!(
        "\n[hooks]\npost_swap = [\"/bin/sh\", \"-c\", \"env > {}\"]\n",
        seen.display()
    );
    let mut a = TestAgent::new(
        name,
        Options {
            extra: hook,
            ..Options::default()
        },
    );
    a.start_with(&[
        ("AWS_ACCESS_KEY_ID", "probe-key-id"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", SECRET),
    ]);
    fx.promote(&fx.v1, name, "ci", None);
    a.wait_serving("1", T);
    assert!(
        eventually(T, || std::fs::metadata(&seen).is_ok_and(|m| m.len() > 0)),
        "the post_swap hook ran\n{}",
        a.log()
    );
    let hook_env = std::fs::read_to_string(&seen).unwrap();
    assert!(hook_env.contains("CAIRN_HOOK=post_swap"), "{hook_env}");
    assert!(!hook_env.contains(SECRET), "the hook saw:\n{hook_env}");
    assert!(!hook_env.contains("AWS_ACCESS_KEY_ID"), "{hook_env}");

    let logs = a.state.join("logs");
    let pumps = environs_of(&["log-pump", logs.to_str().unwrap()]);
    assert_eq!(pumps.len(), 1, "one log pump: {pumps:?}");
    assert!(
        !pumps[0].1.contains(SECRET),
        "the log pump holds:\n{}",
        pumps[0].1
    );

    let service = a.service_pids();
    assert_eq!(service.len(), 1);
    let environ = std::fs::read(format!("/proc/{}/environ", service[0])).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(!environ.contains(SECRET), "the service holds:\n{environ}");
    assert!(Path::new(&format!("/proc/{}", service[0])).exists());
}
