//! The run specification as the JSON a release carries, both ways.
//!
//! A release records how an agent runs its artifact in the same shape as
//! `[release.run]` in `cairn.toml` (durations as `"1s"`, a health check as
//! `{ http, socket }`, `{ http }`, `{ tcp }` or `{ exec }`), so that what a
//! team wrote is what the agent reads, with every default filled in.
//!
//! [`RunSpec::from_json`] reads it back for the agent and applies the same
//! rules as the `cairn.toml` parser (a signed release is still input: a
//! release made by another tool, or by a newer cairn, must not reach the
//! process supervisor unchecked). Unknown fields are refused, as in every
//! signed document: a field this version does not understand could change
//! how the service must be run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::{HealthCheck, Probe, RunSpec, Service, Stop, DEFAULT_THRESHOLD, SIGNALS};
use crate::name::Name;
use crate::units::parse_duration;

impl Service {
    /// The service as JSON (`step`, `run`, `env`, `health` with every
    /// default filled in): what the action records of it.
    pub fn to_json(&self) -> Value {
        json!({
            "step": self.step.as_str(),
            "run": self.run,
            "env": self.env,
            "health": self.health.as_ref().map(health_json),
        })
    }
}

impl RunSpec {
    /// The JSON form recorded in a release.
    pub fn to_json(&self) -> Value {
        json!({
            "command": self.command,
            "sockets": self.sockets.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "health": self.health.as_ref().map(health_json),
            "stop": { "signal": self.stop.signal, "grace": duration(self.stop.grace) },
            "env": self.env,
        })
    }

    /// Reads the JSON form recorded in a release, with the rules of
    /// `[release.run]`; a field left out takes its `cairn.toml` default.
    pub fn from_json(value: &Value) -> Result<Self, RunSpecError> {
        let wire = RunJson::deserialize(value).map_err(|e| RunSpecError(e.to_string()))?;
        if wire.command.is_empty() || wire.command[0].is_empty() {
            return Err(RunSpecError("`command` must name a program".into()));
        }
        let mut sockets: Vec<Name> = Vec::new();
        for s in &wire.sockets {
            let name =
                Name::new(s).ok_or_else(|| RunSpecError(format!("bad socket name {s:?}")))?;
            if sockets.contains(&name) {
                return Err(RunSpecError(format!("socket `{s}` is declared twice")));
            }
            sockets.push(name);
        }
        let health = wire.health.map(|h| h.convert(&sockets)).transpose()?;
        let stop = wire.stop.unwrap_or_default().convert()?;
        Ok(RunSpec {
            command: wire.command,
            sockets,
            health,
            stop,
            env: wire.env,
        })
    }
}

/// Why a release's run specification cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("run specification is invalid: {0}")]
pub struct RunSpecError(String);

fn health_json(h: &HealthCheck) -> Value {
    let mut probe = match &h.probe {
        Probe::SocketHttp { socket, path } => json!({ "http": path, "socket": socket.as_str() }),
        Probe::Http(url) => json!({ "http": url }),
        Probe::Tcp(addr) => json!({ "tcp": addr }),
        Probe::Exec(argv) => json!({ "exec": argv }),
    };
    let timing = [
        ("interval", h.interval),
        ("deadline", h.deadline),
        ("bake", h.bake),
    ];
    for (key, value) in timing {
        probe[key] = Value::String(duration(value));
    }
    probe["threshold"] = json!(h.threshold);
    probe
}

fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunJson {
    command: Vec<String>,
    #[serde(default)]
    sockets: Vec<String>,
    #[serde(default)]
    health: Option<HealthJson>,
    #[serde(default)]
    stop: Option<StopJson>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthJson {
    http: Option<String>,
    socket: Option<String>,
    tcp: Option<String>,
    exec: Option<Vec<String>>,
    interval: Option<String>,
    deadline: Option<String>,
    bake: Option<String>,
    threshold: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StopJson {
    signal: Option<String>,
    grace: Option<String>,
}

fn bad(msg: impl Into<String>) -> RunSpecError {
    RunSpecError(msg.into())
}

fn timing(text: Option<String>, default: Duration) -> Result<Duration, RunSpecError> {
    text.map_or(Ok(default), |t| parse_duration(&t).map_err(bad))
}

impl HealthJson {
    fn convert(self, sockets: &[Name]) -> Result<HealthCheck, RunSpecError> {
        let forms = [self.http.is_some(), self.tcp.is_some(), self.exec.is_some()];
        if forms.iter().filter(|f| **f).count() != 1 {
            return Err(bad(
                "health check must have exactly one of `http`, `tcp` or `exec`",
            ));
        }
        let probe = match (self.http, self.tcp, self.exec, self.socket) {
            (Some(path), _, _, Some(s)) if path.starts_with('/') => {
                let socket = sockets.iter().find(|n| n.as_str() == s).cloned();
                let socket = socket.ok_or_else(|| {
                    bad(format!("health check socket `{s}` is not one of `sockets`"))
                })?;
                Probe::SocketHttp { socket, path }
            }
            (Some(path), _, _, None) if path.starts_with('/') => {
                return Err(bad(
                    "health check `http = \"/path\"` needs `socket = \"NAME\"`",
                ))
            }
            (_, _, _, Some(_)) => {
                return Err(bad("`socket` is only allowed with `http = \"/path\"`"))
            }
            (Some(url), _, _, None) if url.starts_with("http://") => Probe::Http(url),
            (Some(url), _, _, None) => {
                return Err(bad(format!(
                    "health check URL {url:?} must start with http://"
                )))
            }
            (_, Some(addr), _, None) => Probe::Tcp(addr),
            (_, _, Some(argv), None) if argv.is_empty() => {
                return Err(bad("health check `exec` must not be empty"))
            }
            (_, _, Some(argv), None) => Probe::Exec(argv),
            (None, None, None, None) => unreachable!("exactly one form checked above"),
        };
        let threshold = self.threshold.unwrap_or(DEFAULT_THRESHOLD);
        if threshold == 0 {
            return Err(bad("health check `threshold` must be at least 1"));
        }
        Ok(HealthCheck {
            probe,
            interval: timing(self.interval, Duration::from_secs(1))?,
            deadline: timing(self.deadline, Duration::from_secs(30))?,
            bake: timing(self.bake, Duration::ZERO)?,
            threshold,
        })
    }
}

impl StopJson {
    fn convert(self) -> Result<Stop, RunSpecError> {
        let signal = match self.signal {
            None => "TERM".to_owned(),
            Some(s) => {
                let bare = s.strip_prefix("SIG").unwrap_or(&s);
                if !SIGNALS.contains(&bare) {
                    return Err(bad(format!(
                        "unknown stop signal {s:?}, expected one of {SIGNALS:?}"
                    )));
                }
                bare.to_owned()
            }
        };
        Ok(Stop {
            signal,
            grace: timing(self.grace, Duration::from_secs(10))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::DESIGN_EXAMPLE;
    use crate::Recipe;

    #[test]
    fn the_design_example_run_spec_as_json() {
        let recipe = Recipe::parse("cairn.toml", DESIGN_EXAMPLE).unwrap();
        let json = recipe.release.as_ref().unwrap().run.to_json();
        assert_eq!(json["command"][0], "bin/hello");
        assert_eq!(json["sockets"][0], "http");
        assert_eq!(json["health"]["http"], "/healthz");
        assert_eq!(json["health"]["socket"], "http");
        assert_eq!(json["health"]["deadline"], "30s");
        assert_eq!(json["health"]["threshold"], 3);
        assert_eq!(json["stop"]["signal"], "TERM");
        assert_eq!(json["stop"]["grace"], "20s");
    }

    #[test]
    fn every_run_spec_survives_the_round_trip() {
        for sample in [DESIGN_EXAMPLE, crate::samples::DIAMOND] {
            let recipe = Recipe::parse("cairn.toml", sample).unwrap();
            let run = recipe.release.unwrap().run;
            assert_eq!(RunSpec::from_json(&run.to_json()).unwrap(), run);
        }
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let run = RunSpec::from_json(&json!({ "command": ["bin/x"] })).unwrap();
        assert_eq!(run.stop.signal, "TERM");
        assert_eq!(run.stop.grace, Duration::from_secs(10));
        assert!(run.health.is_none() && run.sockets.is_empty());
        let run = RunSpec::from_json(&json!({ "command": ["x"], "health": { "tcp": "h:1" } }));
        let health = run.unwrap().health.unwrap();
        assert_eq!((health.threshold, health.deadline.as_secs()), (3, 30));
    }

    #[test]
    fn bad_run_specs_are_refused_with_their_reason() {
        let cases = [
            (json!({ "command": [] }), "must name a program"),
            (
                json!({ "command": ["x"], "extra": 1 }),
                "unknown field `extra`",
            ),
            (
                json!({ "command": ["x"], "sockets": ["a", "a"] }),
                "declared twice",
            ),
            (
                json!({ "command": ["x"], "health": { "http": "/h", "socket": "b" } }),
                "is not one of `sockets`",
            ),
            (
                json!({ "command": ["x"], "health": { "tcp": "h:1", "exec": ["y"] } }),
                "exactly one of",
            ),
            (
                json!({ "command": ["x"], "health": { "http": "ftp://h" } }),
                "must start with http://",
            ),
            (
                json!({ "command": ["x"], "health": { "tcp": "h:1", "threshold": 0 } }),
                "at least 1",
            ),
            (
                json!({ "command": ["x"], "stop": { "signal": "STOP" } }),
                "unknown stop signal",
            ),
            (
                json!({ "command": ["x"], "stop": { "grace": "soon" } }),
                "invalid duration",
            ),
        ];
        for (value, want) in cases {
            let err = RunSpec::from_json(&value).unwrap_err().to_string();
            assert!(err.contains(want), "{value}: {err}");
        }
    }
}
