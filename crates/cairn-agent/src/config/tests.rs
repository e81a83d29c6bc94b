//! `agent.toml`: the design's example, defaults, and each error with its
//! file, line, column and key.

use std::path::Path;
use std::time::Duration;

use super::*;

const KEY_ID: &str = "ed25519:0123456789abcdef0123456789abcdef";

/// The example of the design brief, with a trust key filled in.
fn example() -> String {
    format!(
        r#"store = "http://127.0.0.1:7070"
service = "hello"
channel = "prod"
set = "eu-1"
id = "host-a"
state_dir = "/var/lib/cairn/hello"
poll_interval = "2s"

[trust]
keys = ["{KEY_ID}"]
threshold = 1

[sockets]
http = "127.0.0.1:8080"

[env]
LOG_LEVEL = "info"
"#
    )
}

fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
    AgentConfig::parse(Path::new("/etc/cairn/agent.toml"), text)
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn the_design_example() {
    let c = parse(&example()).unwrap();
    assert_eq!((c.service.as_str(), c.channel.as_str()), ("hello", "prod"));
    assert_eq!((c.set.as_str(), c.id.as_deref()), ("eu-1", Some("host-a")));
    assert_eq!(c.poll_interval, Duration::from_secs(2));
    assert_eq!(c.trust.policy.threshold, 1);
    assert_eq!(c.trust.policy.keys[0].as_str(), KEY_ID);
    assert_eq!(
        c.sockets["http"],
        SocketAddress::Tcp("127.0.0.1:8080".parse().unwrap())
    );
    assert_eq!(c.env["LOG_LEVEL"], "info");
    assert_eq!(c.generations, 3);
    assert_eq!(c.hooks.timeout, Duration::from_secs(30));
    assert_eq!(c.logs, LogLimits::default());
    assert!(c.token.is_none() && c.status_listen.is_none());
}

#[test]
fn defaults_and_relative_paths() {
    let text = example().replace("id = \"host-a\"\n", "").replace(
        "state_dir = \"/var/lib/cairn/hello\"\n",
        "token_file = \"token\"\n",
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.id, None);
    assert_eq!(c.state_dir, Path::new("/var/lib/cairn/hello"));
    assert_eq!(c.token, Some(TokenSource::File("/etc/cairn/token".into())));
    let text = example().replace("/var/lib/cairn/hello", "state");
    assert_eq!(
        parse(&text).unwrap().state_dir,
        Path::new("/etc/cairn/state")
    );
}

#[test]
fn a_fetch_is_bounded_by_a_minimum_rate_over_a_window() {
    let c = parse(&example()).unwrap();
    assert_eq!(c.fetch_min_rate, 8 * 1024, "the default");
    assert_eq!(c.fetch_rate_window, Duration::from_secs(120));
    let with = |lines: &str| example().replace("poll_interval = \"2s\"", lines);
    let c = parse(&with(
        "fetch_min_rate = \"1MiB\"\nfetch_rate_window = \"30s\"",
    ))
    .unwrap();
    assert_eq!(c.fetch_min_rate, 1 << 20);
    assert_eq!(c.fetch_rate_window, Duration::from_secs(30));
    assert_eq!(
        parse(&with("fetch_min_rate = 500")).unwrap().fetch_min_rate,
        500
    );
    for (bad, msg) in [
        (
            "fetch_min_rate = 0",
            ":7:18: `fetch_min_rate`: must be at least 1 byte a second",
        ),
        ("fetch_min_rate = \"fast\"", ":7:18: `fetch_min_rate`:"),
        (
            "fetch_rate_window = \"0s\"",
            ":7:21: `fetch_rate_window`: must be longer than 0s",
        ),
    ] {
        let e = parse(&with(bad)).unwrap_err().to_string();
        assert!(
            e.starts_with("/etc/cairn/agent.toml") && e.contains(msg),
            "{bad}: {e}"
        );
    }
}

#[test]
fn inline_public_keys_count_as_their_ids() {
    let key = cairn_trust::SigningKey::from_seed(&[7; 32]).public_key();
    let line = key.to_line("ops").unwrap();
    let text = example().replace(KEY_ID, &line);
    let c = parse(&text).unwrap();
    assert_eq!(c.trust.policy.keys, [key.key_id()]);
    assert!(c.trust.inline_keys.get(&key.key_id()).is_some());
}

#[test]
fn every_section_parses() {
    let text = example()
        + r#"
[hooks]
pre_swap = ["/bin/true"]
on_rollback = ["/bin/echo", "rolled back"]
timeout = "5s"

[logs]
max_size = "1MiB"
keep = 2
"#;
    let c = parse(&text).unwrap();
    assert_eq!(
        c.hooks.pre_swap.as_deref(),
        Some(&["/bin/true".to_string()][..])
    );
    assert!(c.hooks.post_swap.is_none());
    assert_eq!(c.hooks.timeout, Duration::from_secs(5));
    assert_eq!(
        c.logs,
        LogLimits {
            max_bytes: 1 << 20,
            keep: 2
        }
    );
    let unix = example().replace("127.0.0.1:8080", "unix:/run/hello.sock");
    assert_eq!(
        parse(&unix).unwrap().sockets["http"],
        SocketAddress::Unix("/run/hello.sock".into())
    );
}

#[test]
fn errors_name_file_line_column_and_key() {
    let cases = [
        (
            example().replace("poll_interval = \"2s\"", "poll_interval = \"soon\""),
            "/etc/cairn/agent.toml:7:17: `poll_interval`: invalid duration \"soon\"",
        ),
        (
            example().replace("set = \"eu-1\"", "set = \"eu/1\""),
            "/etc/cairn/agent.toml:4:7: `set`: \"eu/1\" must be",
        ),
        (
            example().replace("threshold = 1", "threshold = 2"),
            "/etc/cairn/agent.toml:11:13: `trust.threshold`: threshold 2 must be between 1",
        ),
        (
            example().replace(KEY_ID, "ed25519:xyz"),
            "/etc/cairn/agent.toml:10:9: `trust.keys`: key id \"ed25519:xyz\"",
        ),
        (
            example().replace("127.0.0.1:8080", "localhost:8080"),
            "/etc/cairn/agent.toml:14:8: `sockets.http`: \"localhost:8080\" is not an IP address",
        ),
        (
            example().replace("LOG_LEVEL", "LISTEN_FDS"),
            "/etc/cairn/agent.toml:17:1: `env.LISTEN_FDS`: LISTEN_* and CAIRN_* are set by the agent",
        ),
        (
            example().replace("service = \"hello\"", "service = \"Hello\""),
            "/etc/cairn/agent.toml:2:11: `service`: service name \"Hello\" is invalid",
        ),
        (
            example() + "LEVEL = 1\n",
            "/etc/cairn/agent.toml:18:9: invalid type: integer `1`, expected a string",
        ),
        (
            example() + "[hook]\npre_swap = [\"x\"]\n",
            "/etc/cairn/agent.toml:18:2: unknown field `hook`",
        ),
        (
            example().replace("poll_interval", "generations = 1\npoll_interval"),
            "/etc/cairn/agent.toml:7:15: `generations`: must be at least 2",
        ),
        (
            example().replace("http://127.0.0.1", "http://probe:s3cret@127.0.0.1"),
            "/etc/cairn/agent.toml:1:9: `store`: carries credentials (user:password@)",
        ),
    ];
    for (text, want) in cases {
        let err = error(&text);
        assert!(err.starts_with(want), "want {want:?}\n got {err:?}");
        assert!(!err.contains("s3cret"), "a credential echoed: {err}");
    }
    // An `@` past the host is no credential.
    let at_in_path = example().replace("7070\"", "7070/a@b\"");
    assert!(parse(&at_in_path).is_ok());
}

#[test]
fn unknown_keys_and_missing_ones_are_refused() {
    let err = error(&example().replace("poll_interval", "pol_interval"));
    assert!(
        err.starts_with("/etc/cairn/agent.toml:7:1: unknown field `pol_interval`"),
        "{err}"
    );
    let err = error(&example().replace("[trust]", "[trust]\nthreshhold = 1"));
    assert!(err.contains("unknown field `threshhold`"), "{err}");
    let err = error(&example().replace("store = \"http://127.0.0.1:7070\"\n", ""));
    assert!(err.contains("missing field `store`"), "{err}");
    let both = example().replace(
        "poll_interval",
        "token = \"t\"\ntoken_file = \"f\"\npoll_interval",
    );
    let err = error(&both);
    assert!(
        err.contains("`token_file`: give `token` or `token_file`, not both"),
        "{err}"
    );
}

#[test]
fn the_token_is_not_shown_in_debug_output() {
    let text = example().replace("poll_interval", "token = \"s3cr3t\"\npoll_interval");
    let c = parse(&text).unwrap();
    assert!(!format!("{c:?}").contains("s3cr3t"));
}

#[test]
fn fleet_timing_and_a_deploy_override() {
    let c = parse(&example()).unwrap();
    assert_eq!(c.fleet, FleetTiming::default());
    assert!(c.deploy.is_none());
    let text = format!(
        "{}\n[fleet]\npoll = \"300ms\"\nheartbeat = \"1s\"\nmember_timeout = \"5s\"\ncheck_retry = \"2s\"\n\n[deploy]\nstrategy = \"canary\"\ncanary = {{ count = 1, bake = \"2s\" }}\non_failure = \"rollback\"\n",
        example()
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.fleet.poll, Duration::from_millis(300));
    assert_eq!(c.fleet.member_timeout, Duration::from_secs(5));
    assert_eq!(c.fleet.check_retry, Duration::from_secs(2));
    assert_eq!(c.fleet.max_skew, FleetTiming::default().max_skew);
    let plan = c.deploy.unwrap();
    assert_eq!(
        plan.strategy,
        cairn_rollout::Strategy::Canary {
            count: cairn_rollout::Amount::Count(1),
            bake: Duration::from_secs(2)
        }
    );
    assert_eq!(plan.on_failure, cairn_rollout::OnFailure::Rollback);
}

#[test]
fn fleet_and_deploy_errors_name_line_and_key() {
    let bad = format!(
        "{}\n[deploy]\nstrategy = \"rolling\"\nmax_unavalable = 2\n",
        example()
    );
    let e = error(&bad);
    assert!(
        e.starts_with("/etc/cairn/agent.toml:19:1: `deploy`: unknown field `max_unavalable`"),
        "{e}"
    );
    let bad = format!("{}\n[deploy]\nstrategy = \"sideways\"\n", example());
    let e = error(&bad);
    assert!(
        e.starts_with("/etc/cairn/agent.toml:19:1: `deploy`: ") && e.contains("sideways"),
        "{e}"
    );
    let bad = format!(
        "{}\n[fleet]\nheartbeat = \"10s\"\nmember_timeout = \"15s\"\n",
        example()
    );
    assert_eq!(
        error(&bad),
        "/etc/cairn/agent.toml:21:18: `fleet.member_timeout`: must be more than twice `fleet.heartbeat` (a live member would look away)"
    );
    let bad = format!("{}\n[fleet]\npoll = \"soon\"\n", example());
    assert!(error(&bad).contains("`fleet.poll`"), "{}", error(&bad));
    let bad = format!("{}\n[fleet]\npol = \"1s\"\n", example());
    assert!(
        error(&bad).contains("unknown field `pol`"),
        "{}",
        error(&bad)
    );
}
