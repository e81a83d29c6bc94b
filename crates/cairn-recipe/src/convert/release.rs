//! Converting `[release]`.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use crate::error::{ErrorKind, RecipeError, Source};
use crate::model::{HealthCheck, Probe, Release, RunSpec, Step, Stop, DEFAULT_THRESHOLD, SIGNALS};
use crate::name::{Name, StepName};
use crate::wire::{HealthWire, ReleaseWire, StopWire};

/// Converts `[release]`, checking the step exists and the health socket is
/// declared.
pub(crate) fn convert(
    src: &Source<'_>,
    wire: Spanned<ReleaseWire>,
    steps: &BTreeMap<StepName, Step>,
    groups: &BTreeMap<String, Vec<String>>,
) -> Result<Release, RecipeError> {
    let w = wire.into_inner();
    let step = Name::new(w.step.get_ref()).filter(|n| steps.contains_key(n));
    let step = step.ok_or_else(|| {
        let kind = ErrorKind::UndefinedStep {
            context: "[release]".into(),
            step: w.step.get_ref().clone(),
        };
        src.error(w.step.span(), kind)
    })?;
    let mut sockets = Vec::new();
    for s in &w.run.sockets {
        let n = super::name(src, "socket", s)?;
        if sockets.contains(&n) {
            let msg = format!("socket `{n}` is declared twice");
            return Err(src.error(s.span(), ErrorKind::Invalid(msg)));
        }
        sockets.push(n);
    }
    let health = w.run.health.map(|h| health(src, h, &sockets)).transpose()?;
    let run = RunSpec {
        command: super::argv(src, "[release.run] `command`", w.run.command)?,
        sockets,
        health,
        stop: stop(src, w.run.stop)?,
        env: super::env(src, w.run.env, &[])?,
    };
    let requires = requires(src, &w.requires, steps, groups)?;
    Ok(Release {
        step,
        run,
        requires,
    })
}

/// `requires = ["steps.unit", …]`: test steps (a matrix step's name stands
/// for all its expansions), sorted, without repeats.
fn requires(
    src: &Source<'_>,
    wire: &[Spanned<String>],
    steps: &BTreeMap<StepName, Step>,
    groups: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<StepName>, RecipeError> {
    let mut names = Vec::new();
    for r in wire {
        let invalid = |msg: String| src.error(r.span(), ErrorKind::Invalid(msg));
        let Some(bare) = r.get_ref().strip_prefix("steps.") else {
            return Err(invalid(format!(
                "[release] requires {:?}: write a test step as \"steps.NAME\"",
                r.get_ref()
            )));
        };
        let expanded = match groups.get(bare) {
            Some(group) => group.clone(),
            None => vec![bare.to_owned()],
        };
        for name in expanded {
            let Some((n, step)) = steps.get_key_value(name.as_str()) else {
                let kind = ErrorKind::UndefinedStep {
                    context: "[release] requires".into(),
                    step: name,
                };
                return Err(src.error(r.span(), kind));
            };
            if !step.test {
                return Err(invalid(format!(
                    "[release] requires `{n}`, which is not a test step (add `test = true`)"
                )));
            }
            names.push(n.clone());
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Converts a health check; `sockets` are those an `http = "/path"` probe
/// may name.
pub(crate) fn health(
    src: &Source<'_>,
    wire: Spanned<HealthWire>,
    sockets: &[Name],
) -> Result<HealthCheck, RecipeError> {
    let span = wire.span();
    let w = wire.into_inner();
    let invalid = |msg: &str| src.error(span.clone(), ErrorKind::Invalid(msg.into()));
    let forms = [w.http.is_some(), w.tcp.is_some(), w.exec.is_some()];
    if forms.iter().filter(|f| **f).count() != 1 {
        return Err(invalid(
            "health check must have exactly one of `http`, `tcp` or `exec`",
        ));
    }
    let probe = match (w.http, w.tcp, w.exec) {
        (Some(path), _, _) if path.starts_with('/') => {
            let s = w.socket.ok_or_else(|| {
                invalid("health check `http = \"/path\"` needs `socket = \"NAME\"`")
            })?;
            let socket = sockets.iter().find(|n| n.as_str() == s.get_ref()).cloned();
            let socket = socket.ok_or_else(|| {
                let kind = ErrorKind::UnknownSocket {
                    socket: s.get_ref().clone(),
                    sockets: sockets.iter().map(|n| n.to_string()).collect(),
                };
                src.error(s.span(), kind)
            })?;
            Probe::SocketHttp { socket, path }
        }
        _ if w.socket.is_some() => {
            return Err(invalid("`socket` is only allowed with `http = \"/path\"`"))
        }
        (Some(url), _, _) => {
            super::check_url(&url, &["http://"]).map_err(|m| invalid(&m))?;
            Probe::Http(url)
        }
        (_, Some(addr), _) => Probe::Tcp(addr),
        (_, _, Some(argv)) if argv.is_empty() => {
            return Err(invalid("health check `exec` must not be empty"))
        }
        (_, _, Some(argv)) => Probe::Exec(argv),
        (None, None, None) => unreachable!("exactly one form checked above"),
    };
    let threshold = match w.threshold {
        Some(t) if *t.get_ref() == 0 => {
            let msg = "health check `threshold` must be at least 1";
            return Err(src.error(t.span(), ErrorKind::Invalid(msg.into())));
        }
        Some(t) => t.into_inner(),
        None => DEFAULT_THRESHOLD,
    };
    Ok(HealthCheck {
        probe,
        interval: w.interval.map_or(Duration::from_secs(1), |d| d.0),
        deadline: w.deadline.map_or(Duration::from_secs(30), |d| d.0),
        bake: w.bake.map_or(Duration::ZERO, |d| d.0),
        threshold,
    })
}

fn stop(src: &Source<'_>, wire: Option<StopWire>) -> Result<Stop, RecipeError> {
    let (signal, grace) = wire.map_or((None, None), |w| (w.signal, w.grace));
    let signal = match signal {
        None => "TERM".to_owned(),
        Some(s) => {
            let bare = s.get_ref().strip_prefix("SIG").unwrap_or(s.get_ref());
            if !SIGNALS.contains(&bare) {
                let msg = format!(
                    "unknown stop signal {:?}, expected one of {SIGNALS:?}",
                    s.get_ref()
                );
                return Err(src.error(s.span(), ErrorKind::Invalid(msg)));
            }
            bare.to_owned()
        }
    };
    Ok(Stop {
        signal,
        grace: grace.map_or(Duration::from_secs(10), |d| d.0),
    })
}
