//! The literal shape of a [`Plan`], as JSON in a release or TOML in an
//! agent's configuration, and its checks.
//!
//! Every form is checked here once (amounts in range, canary settings only
//! with the canary strategy, exactly one form per gate, freeze windows
//! that end after they start), so a [`Plan`] in hand is valid.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::plan::{Amount, Gate, OnFailure, Order, Plan, Strategy};
use crate::time::Time;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanWire {
    #[serde(default = "rolling")]
    strategy: StrategyName,
    #[serde(default = "one")]
    max_unavailable: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    canary: Option<CanaryWire>,
    #[serde(default)]
    on_failure: OnFailure,
    #[serde(default)]
    gates: Vec<GateWire>,
    #[serde(default, skip_serializing_if = "Order::is_hashed")]
    order: Order,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum StrategyName {
    AtOnce,
    Rolling,
    Canary,
}

fn rolling() -> StrategyName {
    StrategyName::Rolling
}

fn one() -> Amount {
    Amount::Count(1)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryWire {
    #[serde(default = "one")]
    count: Amount,
    #[serde(default = "five_minutes", with = "human")]
    bake: Duration,
}

fn five_minutes() -> Duration {
    Duration::from_secs(300)
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fleet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    freeze: Option<FreezeWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "human_opt")]
    timeout: Option<Duration>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeWire {
    from: TimeText,
    until: TimeText,
}

/// An RFC 3339 time, written as a string (JSON) or a TOML date-time.
#[derive(Clone, Copy)]
struct TimeText(Time);

impl TryFrom<PlanWire> for Plan {
    type Error = String;

    fn try_from(w: PlanWire) -> Result<Self, String> {
        check_amount("max_unavailable", w.max_unavailable)?;
        let strategy = match (w.strategy, w.canary) {
            (StrategyName::Canary, c) => {
                let c = c.unwrap_or(CanaryWire {
                    count: one(),
                    bake: five_minutes(),
                });
                check_amount("canary count", c.count)?;
                Strategy::Canary {
                    count: c.count,
                    bake: c.bake,
                }
            }
            (_, Some(_)) => return Err("`canary` settings need `strategy = \"canary\"`".into()),
            (StrategyName::AtOnce, None) => Strategy::AtOnce,
            (StrategyName::Rolling, None) => Strategy::Rolling,
        };
        let gates = w.gates.into_iter().map(gate).collect::<Result<_, _>>()?;
        if let Order::Pinned(ids) = &w.order {
            let mut sorted = ids.clone();
            sorted.sort();
            if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(format!("member {:?} is named twice in `order`", w[0]));
            }
        }
        Ok(Plan {
            strategy,
            max_unavailable: w.max_unavailable,
            on_failure: w.on_failure,
            gates,
            order: w.order,
        })
    }
}

impl From<Plan> for PlanWire {
    fn from(p: Plan) -> Self {
        let (strategy, canary) = match p.strategy {
            Strategy::AtOnce => (StrategyName::AtOnce, None),
            Strategy::Rolling => (StrategyName::Rolling, None),
            Strategy::Canary { count, bake } => {
                (StrategyName::Canary, Some(CanaryWire { count, bake }))
            }
        };
        PlanWire {
            strategy,
            max_unavailable: p.max_unavailable,
            canary,
            on_failure: p.on_failure,
            gates: p.gates.into_iter().map(gate_wire).collect(),
            order: p.order,
        }
    }
}

fn check_amount(what: &str, a: Amount) -> Result<(), String> {
    match a {
        Amount::Count(0) => Err(format!("`{what}` must be at least 1")),
        Amount::Percent(p) if !(1..=100).contains(&p) => Err(format!(
            "`{what}` of {p}% is out of range; a percentage is 1% to 100%"
        )),
        _ => Ok(()),
    }
}

fn gate(w: GateWire) -> Result<Gate, String> {
    let forms = [w.fleet.is_some(), w.freeze.is_some(), w.check.is_some()];
    if forms.iter().filter(|f| **f).count() != 1 {
        return Err("a gate must have exactly one of `fleet`, `freeze` or `check`".into());
    }
    if w.fleet.is_none() && w.release.is_some() {
        return Err("`release` is only allowed in a `fleet` gate".into());
    }
    if w.check.is_none() && w.timeout.is_some() {
        return Err("`timeout` is only allowed in a `check` gate".into());
    }
    if let Some(fleet) = w.fleet {
        let (service, set) = fleet
            .split_once('/')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'))
            .ok_or_else(|| format!("gate fleet {fleet:?} must be \"service/set\""))?;
        if let Some(r) = &w.release {
            let hex = r.strip_prefix("sha256:").map(|h| h.split('/').next());
            if !hex
                .flatten()
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(format!("gate release {r:?} is not a sha256: digest"));
            }
        }
        return Ok(Gate::Fleet {
            service: service.into(),
            set: set.into(),
            release: w.release,
        });
    }
    if let Some(f) = w.freeze {
        if f.until.0 <= f.from.0 {
            return Err(format!(
                "freeze window ends ({}) before it starts ({})",
                rfc3339(f.until.0),
                rfc3339(f.from.0)
            ));
        }
        return Ok(Gate::Freeze {
            from: f.from.0,
            until: f.until.0,
        });
    }
    let command = w.check.unwrap_or_default();
    if command.is_empty() {
        return Err("gate `check` must not be empty".into());
    }
    Ok(Gate::Check {
        command,
        timeout: w.timeout.unwrap_or(Duration::from_secs(60)),
    })
}

fn gate_wire(g: Gate) -> GateWire {
    match g {
        Gate::Fleet {
            service,
            set,
            release,
        } => GateWire {
            fleet: Some(format!("{service}/{set}")),
            release,
            ..GateWire::default()
        },
        Gate::Freeze { from, until } => GateWire {
            freeze: Some(FreezeWire {
                from: TimeText(from),
                until: TimeText(until),
            }),
            ..GateWire::default()
        },
        Gate::Check { command, timeout } => GateWire {
            check: Some(command),
            timeout: Some(timeout),
            ..GateWire::default()
        },
    }
}

/// `time` as RFC 3339 in UTC (`2025-12-20T00:00:00Z`).
pub(crate) fn rfc3339(t: Time) -> String {
    let nanos = i128::from(t.0) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{}ms", t.0))
}

fn parse_rfc3339(text: &str) -> Result<Time, String> {
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|e| {
        format!("{text:?} is not an RFC 3339 time with an offset (e.g. 2025-12-20T00:00:00Z): {e}")
    })?;
    Ok(Time(
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
    ))
}

impl Serialize for TimeText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(self.0))
    }
}

impl<'de> Deserialize<'de> for TimeText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TimeVisitor)
    }
}

struct TimeVisitor;

impl<'de> Visitor<'de> for TimeVisitor {
    type Value = TimeText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 time such as 2025-12-20T00:00:00Z")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<TimeText, E> {
        parse_rfc3339(v).map(TimeText).map_err(E::custom)
    }

    /// A TOML date-time reaches serde as a one-entry map holding its text.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TimeText, A::Error> {
        let Some((_, text)) = map.next_entry::<String, String>()? else {
            return Err(de::Error::custom("expected a date-time"));
        };
        self.visit_str(&text)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Amount::Count(n) => s.serialize_u32(*n),
            Amount::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AmountVisitor)
    }
}

struct AmountVisitor;

impl Visitor<'_> for AmountVisitor {
    type Value = Amount;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number of members or a percentage such as \"10%\"")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
        u64::try_from(v)
            .map_err(|_| E::custom(format!("{v} members is negative")))
            .and_then(|v| self.visit_u64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
        u32::try_from(v)
            .map(Amount::Count)
            .map_err(|_| E::custom(format!("{v} members is too many")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
        v.strip_suffix('%')
            .and_then(|n| n.trim().parse().ok())
            .map(Amount::Percent)
            .ok_or_else(|| {
                E::custom(format!(
                    "{v:?} is not a percentage; expected a number of members or e.g. \"10%\""
                ))
            })
    }
}

impl Order {
    fn is_hashed(&self) -> bool {
        matches!(self, Order::Hashed)
    }
}

impl Serialize for Order {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Order::Hashed => s.serialize_str("hashed"),
            Order::Pinned(ids) => ids.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Order {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OrderWire {
            Name(String),
            Pinned(Vec<String>),
        }
        match OrderWire::deserialize(d)? {
            OrderWire::Name(n) if n == "hashed" => Ok(Order::Hashed),
            OrderWire::Name(n) => Err(de::Error::custom(format!(
                "order {n:?} is unknown; expected \"hashed\" or a list of member ids"
            ))),
            OrderWire::Pinned(ids) => Ok(Order::Pinned(ids)),
        }
    }
}

/// Durations as humantime text (`"10m"`), as `cairn.toml` writes them.
mod human {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?} ({e}); expected e.g. \"30s\", \"10m\""
            ))
        })
    }
}

mod human_opt {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::human::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::human::deserialize(d).map(Some)
    }
}
