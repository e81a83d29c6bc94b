//! Converting `[deploy]`: the strategy, how many members may be
//! unavailable, what a failure does, and the gates.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::error::{ErrorKind, RecipeError, Source};
use crate::model::{Amount, Deploy, Gate, OnFailure, Strategy};
use crate::name::Name;
use crate::wire::{AmountWire, DeployWire, GateWire, OnFailureWire, StrategyWire};

/// Converts `[deploy]`.
pub(crate) fn convert(src: &Source<'_>, wire: Spanned<DeployWire>) -> Result<Deploy, RecipeError> {
    let w = wire.into_inner();
    let max_unavailable = w
        .max_unavailable
        .map(|m| amount(src, "max_unavailable", m))
        .transpose()?
        .unwrap_or(Amount::Count(1));
    let strategy = match (w.strategy.unwrap_or(StrategyWire::Rolling), w.canary) {
        (StrategyWire::Canary, c) => {
            let (count, bake) = c.map_or((None, None), |c| {
                let c = c.into_inner();
                (c.count, c.bake)
            });
            Strategy::Canary {
                count: count
                    .map(|c| amount(src, "canary count", c))
                    .transpose()?
                    .unwrap_or(Amount::Count(1)),
                bake: bake.map_or(Duration::from_secs(300), |d| d.0),
            }
        }
        (_, Some(c)) => {
            let msg = "`canary` settings need `strategy = \"canary\"`";
            return Err(src.error(c.span(), ErrorKind::Invalid(msg.into())));
        }
        (StrategyWire::AtOnce, None) => Strategy::AtOnce,
        (StrategyWire::Rolling, None) => Strategy::Rolling,
    };
    let on_failure = match w.on_failure {
        None | Some(OnFailureWire::Halt) => OnFailure::Halt,
        Some(OnFailureWire::Rollback) => OnFailure::Rollback,
    };
    let gates = w
        .gates
        .into_iter()
        .map(|g| gate(src, g))
        .collect::<Result<_, _>>()?;
    Ok(Deploy {
        strategy,
        max_unavailable,
        on_failure,
        gates,
    })
}

/// A number of members (at least 1) or a percentage (1 to 100).
fn amount(src: &Source<'_>, what: &str, wire: Spanned<AmountWire>) -> Result<Amount, RecipeError> {
    let span: Range<usize> = wire.span();
    let invalid = |msg: String| src.error(span.clone(), ErrorKind::Invalid(msg));
    match wire.into_inner() {
        AmountWire::Count(0) => Err(invalid(format!("`{what}` must be at least 1"))),
        AmountWire::Count(n) => u32::try_from(n)
            .map(Amount::Count)
            .map_err(|_| invalid(format!("`{what}` of {n} members is too large"))),
        AmountWire::Percent(p) if (1..=100).contains(&p) => Ok(Amount::Percent(p as u32)),
        AmountWire::Percent(p) => Err(invalid(format!(
            "`{what}` of {p}% is out of range; a percentage is 1% to 100%"
        ))),
    }
}

fn gate(src: &Source<'_>, wire: Spanned<GateWire>) -> Result<Gate, RecipeError> {
    let span = wire.span();
    let w = wire.into_inner();
    let invalid = |msg: String| src.error(span.clone(), ErrorKind::Invalid(msg));
    let forms = [w.fleet.is_some(), w.freeze.is_some(), w.check.is_some()];
    if forms.iter().filter(|f| **f).count() != 1 {
        return Err(invalid(
            "a gate must have exactly one of `fleet`, `freeze` or `check`".into(),
        ));
    }
    if w.fleet.is_none() && w.release.is_some() {
        return Err(invalid(
            "`release` is only allowed in a `fleet` gate".into(),
        ));
    }
    if w.check.is_none() && w.timeout.is_some() {
        return Err(invalid(
            "`timeout` is only allowed in a `check` gate".into(),
        ));
    }
    if let Some(fleet) = w.fleet {
        let parts = fleet
            .split_once('/')
            .and_then(|(a, b)| Some((Name::new(a)?, Name::new(b)?)));
        let (service, set) = parts
            .ok_or_else(|| invalid(format!("gate fleet {fleet:?} must be \"service/set\"")))?;
        let release = w.release.map(|r| super::digest(src, &r)).transpose()?;
        return Ok(Gate::Fleet {
            service,
            set,
            release,
        });
    }
    if let Some(f) = w.freeze {
        if f.from.offset.is_none()
            || f.until.offset.is_none()
            || f.from.date.is_none()
            || f.until.date.is_none()
            || f.from.time.is_none()
            || f.until.time.is_none()
        {
            return Err(invalid(
                "freeze times need a date, a time and an offset, e.g. 2025-12-20T00:00:00Z".into(),
            ));
        }
        if instant(&f.until) <= instant(&f.from) {
            return Err(invalid(format!(
                "freeze window ends ({}) before it starts ({})",
                f.until, f.from
            )));
        }
        let (from, until) = (f.from.to_string(), f.until.to_string());
        return Ok(Gate::Freeze { from, until });
    }
    let command = w.check.unwrap_or_default();
    if command.is_empty() {
        return Err(invalid("gate `check` must not be empty".into()));
    }
    Ok(Gate::Check {
        command,
        timeout: w.timeout.map_or(Duration::from_secs(60), |d| d.0),
    })
}

/// A full TOML offset date-time as nanoseconds since the Unix epoch, to
/// order the two ends of a freeze window.
fn instant(t: &toml::value::Datetime) -> i128 {
    let (Some(date), Some(time)) = (t.date, t.time) else {
        return 0;
    };
    let offset_minutes = match t.offset {
        Some(toml::value::Offset::Custom { minutes }) => i64::from(minutes),
        _ => 0,
    };
    let (y, m, d) = (
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    // Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
    // (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second)
        - offset_minutes * 60;
    i128::from(seconds) * 1_000_000_000 + i128::from(time.nanosecond)
}
