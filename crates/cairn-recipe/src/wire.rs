//! The literal shape of `cairn.toml`, as `serde` reads it.
//!
//! These types mirror the file one to one and reject unknown keys. They are
//! deliberately loose where a table is "one of" several forms (an input is a
//! path, a tree or a fetch; a health check is http, tcp or exec): an untagged
//! enum would turn a typo into "data did not match any variant", so instead
//! every form's keys are optional here and `convert` checks that exactly one
//! form is present, pointing at the table. Values that later checks must
//! locate are kept [`Spanned`].

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::units::{ByteSize, HumanDuration};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecipeWire {
    pub service: ServiceWire,
    #[serde(default)]
    pub inputs: BTreeMap<String, Spanned<InputWire>>,
    #[serde(default)]
    pub steps: BTreeMap<String, Spanned<StepWire>>,
    pub release: Option<Spanned<ReleaseWire>>,
    pub deploy: Option<Spanned<DeployWire>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceWire {
    pub name: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InputWire {
    pub path: Option<String>,
    pub exclude: Option<Vec<String>>,
    pub gitignore: Option<bool>,
    pub tree: Option<Spanned<String>>,
    pub url: Option<String>,
    pub digest: Option<Spanned<String>>,
    pub unpack: Option<bool>,
    pub oci: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepWire {
    #[serde(default)]
    pub mounts: BTreeMap<String, Spanned<MountWire>>,
    pub workdir: Option<Spanned<String>>,
    pub run: Spanned<Vec<String>>,
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    pub timeout: Option<HumanDuration>,
    #[serde(default)]
    pub limits: LimitsWire,
    #[serde(default)]
    pub outputs: Vec<Spanned<String>>,
    /// `test = true`: the step is a test (see [`crate::model::Step::test`]).
    #[serde(default)]
    pub test: bool,
    /// `report = "junit.xml"`: where below `/out` a test writes its report.
    pub report: Option<Spanned<String>>,
    /// `platform = "linux/arm64"`.
    pub platform: Option<Spanned<String>>,
    /// `emulator = "qemu"`: the input holding `qemu-<arch>-static`.
    pub emulator: Option<Spanned<String>>,
    /// `matrix = { arch = ["amd64", "arm64"] }`, expanded by [`crate::matrix`].
    pub matrix: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    /// `[steps.NAME.services.SVC]`: processes started before a test.
    #[serde(default)]
    pub services: BTreeMap<String, Spanned<StepServiceWire>>,
}

/// `[steps.NAME.services.SVC]`: `step` is the artifact (mounted at
/// `/services/SVC`), `run` its command, `health` when it is ready.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepServiceWire {
    pub step: Spanned<String>,
    pub run: Spanned<Vec<String>>,
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    pub health: Option<Spanned<HealthWire>>,
}

/// `"src"`, `"steps.build"` or `{ input = "src", writable = true }`.
#[derive(Debug, Clone)]
pub(crate) struct MountWire {
    pub input: String,
    pub writable: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MountTable {
    input: String,
    #[serde(default)]
    writable: bool,
}

impl<'de> Deserialize<'de> for MountWire {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MountVisitor)
    }
}

struct MountVisitor;

impl<'de> Visitor<'de> for MountVisitor {
    type Value = MountWire;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an input name, \"steps.NAME\", or { input = \"...\", writable = true }")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<MountWire, E> {
        Ok(MountWire {
            input: v.to_owned(),
            writable: false,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MountWire, A::Error> {
        let t = MountTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(MountWire {
            input: t.input,
            writable: t.writable,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsWire {
    pub memory: Option<ByteSize>,
    pub processes: Option<u32>,
    pub open_files: Option<u32>,
    pub tmp: Option<ByteSize>,
    pub out: Option<ByteSize>,
    pub out_files: Option<u64>,
    pub log: Option<ByteSize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseWire {
    pub step: Spanned<String>,
    pub run: RunWire,
    /// `requires = ["steps.unit", …]`: tests that must pass before signing.
    #[serde(default)]
    pub requires: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunWire {
    pub command: Spanned<Vec<String>>,
    #[serde(default)]
    pub sockets: Vec<Spanned<String>>,
    pub health: Option<Spanned<HealthWire>>,
    pub stop: Option<StopWire>,
    pub env: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthWire {
    pub http: Option<String>,
    pub socket: Option<Spanned<String>>,
    pub tcp: Option<String>,
    pub exec: Option<Vec<String>>,
    pub interval: Option<HumanDuration>,
    pub deadline: Option<HumanDuration>,
    pub bake: Option<HumanDuration>,
    pub threshold: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StopWire {
    pub signal: Option<Spanned<String>>,
    pub grace: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeployWire {
    pub strategy: Option<StrategyWire>,
    pub max_unavailable: Option<Spanned<AmountWire>>,
    pub canary: Option<Spanned<CanaryWire>>,
    pub on_failure: Option<OnFailureWire>,
    #[serde(default)]
    pub gates: Vec<Spanned<GateWire>>,
}

/// `2` or `"10%"`, checked for range in `convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AmountWire {
    Count(u64),
    Percent(u64),
}

impl<'de> Deserialize<'de> for AmountWire {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AmountVisitor)
    }
}

struct AmountVisitor;

impl Visitor<'_> for AmountVisitor {
    type Value = AmountWire;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number of members or a percentage such as \"10%\"")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<AmountWire, E> {
        u64::try_from(v)
            .map(AmountWire::Count)
            .map_err(|_| E::custom(format!("{v} members is negative")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<AmountWire, E> {
        Ok(AmountWire::Count(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<AmountWire, E> {
        v.strip_suffix('%')
            .and_then(|n| n.trim().parse().ok())
            .map(AmountWire::Percent)
            .ok_or_else(|| {
                E::custom(format!(
                    "{v:?} is not a percentage; expected a number of members or e.g. \"10%\""
                ))
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum OnFailureWire {
    Halt,
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum StrategyWire {
    AtOnce,
    Rolling,
    Canary,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CanaryWire {
    pub count: Option<Spanned<AmountWire>>,
    pub bake: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GateWire {
    pub fleet: Option<String>,
    pub release: Option<Spanned<String>>,
    pub freeze: Option<FreezeWire>,
    pub check: Option<Vec<String>>,
    pub timeout: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FreezeWire {
    pub from: toml::value::Datetime,
    pub until: toml::value::Datetime,
}
