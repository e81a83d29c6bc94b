//! `cairn.toml`: the recipe of a service, parsed, validated, planned and
//! compiled into REAPI actions.
//!
//! The crate is pure (no file, network or clock): the CLI reads the file,
//! the build resolves inputs to trees. Work happens in three stages, each a
//! function of its inputs:
//!
//! 1. [`Recipe::parse`]: text → validated [`Recipe`]. Errors point at
//!    `file:line:column` ([`RecipeError`]).
//! 2. [`Recipe::plan`]: a step → the steps it needs, in parallel waves.
//! 3. [`compile_action`]: a step plus its resolved mounts → `Command` and
//!    `Action` messages and their digests, the build cache key.
//!
//! The schema is documented on the model types ([`model`]) and shown in
//! [`samples::DESIGN_EXAMPLE`].

pub mod action;
pub mod error;
pub mod graph;
pub mod model;
pub mod name;
pub mod platform;
pub mod samples;

mod convert;
mod deploy_json;
mod matrix;
mod run_json;
mod units;
mod wire;

pub use action::{compile_action, CompileError, CompiledAction, ResolvedMount, SOURCE_DATE_EPOCH};
pub use error::{ErrorKind, Location, RecipeError};
pub use graph::UnknownStep;
pub use model::{
    Amount, Deploy, Gate, HealthCheck, Input, Limits, Mount, MountSource, OnFailure, Probe, Recipe,
    Release, RunSpec, Service, Step, Stop, Strategy, DEFAULT_THRESHOLD, EMULATOR_MOUNT,
    SERVICES_DIR,
};
pub use name::{InputName, Name, StepName};
pub use platform::Platform;
pub use run_json::RunSpecError;
pub use units::{parse_bytes, parse_duration};

impl Recipe {
    /// Parses and validates the recipe `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, RecipeError> {
        let src = error::Source { file, text };
        let wire: wire::RecipeWire = toml::from_str(text).map_err(|e| src.toml(&e))?;
        convert::recipe(&src, wire)
    }
}

#[cfg(test)]
mod tests;
