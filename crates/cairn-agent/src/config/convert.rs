//! Wire types → [`AgentConfig`], with the rules a type cannot say.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use cairn_recipe::Location;
use cairn_trust::{ChannelPolicy, KeyId, KeySet, PublicKey};
use toml::Spanned;

use super::wire::{AgentWire, FleetWire, HooksWire, LogsWire, TrustWire};
use super::{
    AgentConfig, ConfigError, FleetTiming, Hooks, LogLimits, SocketAddress, TokenSource, Trust,
};

/// The text being converted, for errors and relative paths.
pub(crate) struct Source<'a> {
    pub file: String,
    pub dir: PathBuf,
    pub text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            location: Some(Location::of_offset(self.text, span.start)),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    pub(crate) fn toml(&self, e: &toml::de::Error) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            location: e.span().map(|s| Location::of_offset(self.text, s.start)),
            key: None,
            message: e.message().trim().to_string(),
        }
    }

    fn path(&self, value: &str) -> PathBuf {
        self.dir.join(value)
    }
}

/// Converts the whole file.
pub(crate) fn config(src: &Source<'_>, w: AgentWire) -> Result<AgentConfig, ConfigError> {
    let service = name(src, "service", &w.service)?;
    let channel = name(src, "channel", &w.channel)?;
    let set = segment(src, "set", &w.set)?;
    let id = w.id.as_ref().map(|i| segment(src, "id", i)).transpose()?;
    if w.store.get_ref().is_empty() {
        return Err(src.error(w.store.span(), "store", "must not be empty"));
    }
    if has_credentials(w.store.get_ref()) {
        // Not echoed: the error would print them.
        let msg = "carries credentials (user:password@): they would show in every error, \
                   the status endpoint and the member record others read; give `token_file`";
        return Err(src.error(w.store.span(), "store", msg));
    }
    let token = match (w.token, w.token_file) {
        (Some(_), Some(f)) => {
            return Err(src.error(
                f.span(),
                "token_file",
                "give `token` or `token_file`, not both",
            ))
        }
        (Some(t), None) => Some(TokenSource::Inline(t.into_inner())),
        (None, Some(f)) => Some(TokenSource::File(src.path(f.get_ref()))),
        (None, None) => None,
    };
    let generations = match w.generations {
        Some(g) if *g.get_ref() < 2 => {
            let msg = "must be at least 2 (the current generation and one to roll back to)";
            return Err(src.error(g.span(), "generations", msg));
        }
        Some(g) => g.into_inner() as usize,
        None => 3,
    };
    let status_listen = w
        .status_listen
        .map(|s| {
            s.get_ref().parse().map_err(|_| {
                src.error(
                    s.span(),
                    "status_listen",
                    "expected an IP address and port, e.g. \"127.0.0.1:9100\"",
                )
            })
        })
        .transpose()?;
    Ok(AgentConfig {
        store: w.store.into_inner(),
        token,
        state_dir: w.state_dir.map_or_else(
            || PathBuf::from("/var/lib/cairn").join(&service),
            |d| src.path(d.get_ref()),
        ),
        poll_interval: duration(
            src,
            "poll_interval",
            w.poll_interval,
            Duration::from_secs(2),
        )?,
        fetch_silence: duration(
            src,
            "fetch_silence",
            w.fetch_silence,
            Duration::from_secs(60),
        )?,
        fetch_min_rate: rate(src, w.fetch_min_rate)?,
        fetch_rate_window: duration(
            src,
            "fetch_rate_window",
            w.fetch_rate_window,
            Duration::from_secs(120),
        )?,
        generations,
        user: non_empty(src, "user", w.user)?,
        group: non_empty(src, "group", w.group)?,
        status_listen,
        trust: trust(src, w.trust, &service, &channel, w.keys_dir)?,
        sockets: sockets(src, w.sockets)?,
        env: env(src, w.env)?,
        hooks: hooks(src, w.hooks)?,
        logs: logs(src, w.logs)?,
        fleet: fleet(src, w.fleet)?,
        deploy: w.deploy.map(|d| deploy(src, d)).transpose()?,
        service,
        channel,
        set,
        id,
    })
}

fn name(src: &Source<'_>, key: &'static str, v: &Spanned<String>) -> Result<String, ConfigError> {
    cairn_trust::document::validate_name(key, v.get_ref())
        .map_err(|e| src.error(v.span(), key, e.to_string()))?;
    Ok(v.get_ref().clone())
}

/// A ref name segment: `[A-Za-z0-9._-]`, 1 to 63 bytes, not `.` or `..`.
fn segment(src: &Source<'_>, key: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
    let s = v.get_ref();
    let ok = !s.is_empty()
        && s.len() <= 63
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        let msg = format!("{s:?} must be 1 to 63 of A-Z a-z 0-9 . _ -");
        return Err(src.error(v.span(), key, msg));
    }
    Ok(s.clone())
}

fn non_empty(
    src: &Source<'_>,
    key: &str,
    v: Option<Spanned<String>>,
) -> Result<Option<String>, ConfigError> {
    match v {
        Some(v) if v.get_ref().is_empty() => Err(src.error(v.span(), key, "must not be empty")),
        v => Ok(v.map(Spanned::into_inner)),
    }
}

/// Whether a store URL has a user-info part (`http://user:pw@host`).
fn has_credentials(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.contains('@')
}

fn duration(
    src: &Source<'_>,
    key: &str,
    v: Option<Spanned<String>>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    match cairn_recipe::parse_duration(v.get_ref()) {
        Ok(d) if d.is_zero() => Err(src.error(v.span(), key, "must be longer than 0s")),
        Ok(d) => Ok(d),
        Err(msg) => Err(src.error(v.span(), key, msg)),
    }
}

fn trust(
    src: &Source<'_>,
    w: Spanned<TrustWire>,
    service: &str,
    channel: &str,
    keys_dir: Option<Spanned<String>>,
) -> Result<Trust, ConfigError> {
    let span = w.span();
    let w = w.into_inner();
    let mut ids = Vec::new();
    let mut inline_keys = KeySet::new();
    for k in &w.keys {
        let text = k.get_ref();
        let id = if text.starts_with(cairn_trust::key::PUBLIC_PREFIX) {
            let (_, key) = PublicKey::from_line(text)
                .map_err(|e| src.error(k.span(), "trust.keys", e.to_string()))?;
            inline_keys.insert(key);
            key.key_id()
        } else {
            text.parse::<KeyId>()
                .map_err(|e| src.error(k.span(), "trust.keys", e.to_string()))?
        };
        ids.push(id);
    }
    let policy = ChannelPolicy {
        service: service.into(),
        channel: channel.into(),
        keys: ids,
        threshold: *w.threshold.get_ref(),
    };
    if let Some(problem) = policy.problem() {
        // The same test `problem` ends with, to point at the right key.
        let (key, at) = match policy.threshold {
            t if t == 0 || t > policy.keys.len() => ("trust.threshold", w.threshold.span()),
            _ => ("trust.keys", span),
        };
        return Err(src.error(at, key, problem));
    }
    Ok(Trust {
        policy,
        inline_keys,
        keys_dir: keys_dir.map(|d| src.path(d.get_ref())),
    })
}

fn sockets(
    src: &Source<'_>,
    w: BTreeMap<Spanned<String>, Spanned<String>>,
) -> Result<BTreeMap<String, SocketAddress>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, addr) in w {
        let key = format!("sockets.{}", name.get_ref());
        if cairn_recipe::Name::new(name.get_ref()).is_none() {
            let msg = "a socket name is [a-z0-9][a-z0-9_-]*, as in the release's `sockets`";
            return Err(src.error(name.span(), &key, msg));
        }
        let text = addr.get_ref();
        let parsed = match text.strip_prefix("unix:") {
            Some(path) if path.starts_with('/') && path.len() < 100 => {
                SocketAddress::Unix(PathBuf::from(path))
            }
            Some(_) => {
                let msg = "a unix socket needs an absolute path shorter than 100 bytes";
                return Err(src.error(addr.span(), &key, msg));
            }
            None => SocketAddress::Tcp(text.parse().map_err(|_| {
                let msg = format!(
                    "{text:?} is not an IP address and port (e.g. \"127.0.0.1:8080\") or unix:/path"
                );
                src.error(addr.span(), &key, msg)
            })?),
        };
        if out.values().any(|a| *a == parsed) {
            return Err(src.error(addr.span(), &key, "another socket has this address"));
        }
        out.insert(name.into_inner(), parsed);
    }
    Ok(out)
}

fn env(
    src: &Source<'_>,
    w: BTreeMap<Spanned<String>, String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (k, v) in w {
        let name = k.get_ref();
        let ok = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok || v.contains('\0') {
            let msg = "environment names are [A-Za-z_][A-Za-z0-9_]* and values have no NUL";
            return Err(src.error(k.span(), &format!("env.{name}"), msg));
        }
        if name.starts_with("LISTEN_") || name.starts_with("CAIRN_") {
            let msg = "LISTEN_* and CAIRN_* are set by the agent";
            return Err(src.error(k.span(), &format!("env.{name}"), msg));
        }
        out.insert(k.into_inner(), v);
    }
    Ok(out)
}

fn hooks(src: &Source<'_>, w: Option<HooksWire>) -> Result<Hooks, ConfigError> {
    let Some(w) = w else {
        return Ok(Hooks {
            timeout: Duration::from_secs(30),
            ..Hooks::default()
        });
    };
    let argv = |key: &str, v: Option<Spanned<Vec<String>>>| match v {
        Some(v) if v.get_ref().first().is_none_or(|p| p.is_empty()) => {
            Err(src.error(v.span(), key, "a hook is a non-empty command line"))
        }
        v => Ok(v.map(Spanned::into_inner)),
    };
    Ok(Hooks {
        pre_swap: argv("hooks.pre_swap", w.pre_swap)?,
        post_swap: argv("hooks.post_swap", w.post_swap)?,
        on_rollback: argv("hooks.on_rollback", w.on_rollback)?,
        timeout: duration(src, "hooks.timeout", w.timeout, Duration::from_secs(30))?,
    })
}

/// `[fleet]`: the rollout protocol's intervals; the defaults of
/// [`cairn_rollout::Timing`] for what is not given.
fn fleet(src: &Source<'_>, w: Option<FleetWire>) -> Result<FleetTiming, ConfigError> {
    let d = FleetTiming::default();
    let Some(w) = w else { return Ok(d) };
    let timeout_span = w.member_timeout.as_ref().map(Spanned::span);
    let heartbeat = duration(src, "fleet.heartbeat", w.heartbeat, d.heartbeat)?;
    let t = FleetTiming {
        poll: duration(src, "fleet.poll", w.poll, d.poll)?,
        idle_poll: duration(src, "fleet.idle_poll", w.idle_poll, d.idle_poll)?,
        heartbeat,
        member_timeout: duration(
            src,
            "fleet.member_timeout",
            w.member_timeout,
            d.member_timeout.max(heartbeat * 3),
        )?,
        steward_lease: duration(src, "fleet.steward_lease", w.steward_lease, d.steward_lease)?,
        max_skew: duration(src, "fleet.max_skew", w.max_skew, d.max_skew)?,
        check_retry: duration(src, "fleet.check_retry", w.check_retry, d.check_retry)?,
    };
    if let Some(span) = timeout_span.filter(|_| t.member_timeout <= t.heartbeat * 2) {
        let msg = "must be more than twice `fleet.heartbeat` (a live member would look away)";
        return Err(src.error(span, "fleet.member_timeout", msg));
    }
    Ok(t)
}

/// `[deploy]`: the set's plan, the same shape as `cairn.toml`'s (unknown
/// keys refused).
fn deploy(src: &Source<'_>, v: Spanned<toml::Value>) -> Result<cairn_rollout::Plan, ConfigError> {
    use serde::Deserialize;
    let span = v.span();
    cairn_rollout::Plan::deserialize(v.into_inner())
        .map_err(|e| src.error(span, "deploy", e.message().trim().to_string()))
}

/// `fetch_min_rate`: bytes a second, as a size (`"8KiB"`) or a number.
fn rate(src: &Source<'_>, v: Option<Spanned<toml::Value>>) -> Result<u64, ConfigError> {
    let Some(v) = v else { return Ok(8 * 1024) };
    let bytes = match v.get_ref() {
        toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| "negative".to_string()),
        toml::Value::String(s) => cairn_recipe::parse_bytes(s),
        _ => Err("expected a size a second such as \"8KiB\"".to_string()),
    };
    match bytes {
        Ok(0) => Err(src.error(
            v.span(),
            "fetch_min_rate",
            "must be at least 1 byte a second",
        )),
        Ok(b) => Ok(b),
        Err(msg) => Err(src.error(v.span(), "fetch_min_rate", msg)),
    }
}

fn logs(src: &Source<'_>, w: Option<LogsWire>) -> Result<LogLimits, ConfigError> {
    let mut limits = LogLimits::default();
    let Some(w) = w else { return Ok(limits) };
    if let Some(size) = w.max_size {
        let bytes = match size.get_ref() {
            toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| "negative".to_string()),
            toml::Value::String(s) => cairn_recipe::parse_bytes(s),
            _ => Err("expected a size such as \"10MiB\"".to_string()),
        };
        limits.max_bytes = match bytes {
            Ok(b) if b >= 4096 => b,
            Ok(_) => return Err(src.error(size.span(), "logs.max_size", "must be at least 4KiB")),
            Err(msg) => return Err(src.error(size.span(), "logs.max_size", msg)),
        };
    }
    if let Some(keep) = w.keep {
        limits.keep = keep.into_inner();
    }
    Ok(limits)
}
