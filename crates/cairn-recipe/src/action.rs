//! Compiling a step into a REAPI `Command` and `Action`.
//!
//! The action digest is the build cache key, so everything that can change
//! a step's result must be in the action: the command and environment in
//! the `Command`, the files in the input root, and everything else (the
//! sandbox flavour, which tree is mounted where and how, limits, required
//! outputs) as platform properties. Properties and environment variables are
//! sorted by name, as REAPI requires, so equal steps give equal bytes.
//!
//! The caller (the build) resolves each mount to a tree digest and grafts
//! them into one input root; this module only encodes, which keeps it pure.

use std::time::Duration;

use cairn_digest::Digest;
use cairn_tree::proto;
use prost::Message;

use crate::model::{Limits, Recipe, Step};

/// `SOURCE_DATE_EPOCH` in every step: timestamps embedded by tools are 0.
pub const SOURCE_DATE_EPOCH: &str = "0";

/// The sandbox flavour; bump it when the sandbox changes what steps see.
pub const SANDBOX: &str = "linux-ns-v2";

/// Where a step writes its output, and the REAPI output path for it.
pub const OUT_DIR: &str = "/out";

/// Environment every step gets, whatever the recipe says.
pub const FIXED_ENV: [(&str, &str); 5] = [
    ("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH),
    ("TZ", "UTC"),
    ("LANG", "C.UTF-8"),
    ("HOME", "/homeless"),
    ("OUT", OUT_DIR),
];

/// The names of [`FIXED_ENV`]: a recipe may not set them.
pub const FIXED_ENV_NAMES: [&str; 5] = ["SOURCE_DATE_EPOCH", "TZ", "LANG", "HOME", "OUT"];

/// One mount as the build resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedMount {
    /// Sandbox path, as in [`Step::mounts`] (absolute, normalized).
    pub target: String,
    /// Digest of the mounted tree's root `Directory`.
    pub tree: Digest,
    /// Whether the step gets a private writable copy.
    pub writable: bool,
}

/// A step's `Command` and `Action`, encoded and digested.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledAction {
    /// The command.
    pub command: proto::Command,
    /// The action (the cache key is [`Self::action_digest`]).
    pub action: proto::Action,
    /// Digest of [`Self::command_bytes`].
    pub command_digest: Digest,
    /// Digest of [`Self::action_bytes`].
    pub action_digest: Digest,
    /// Encoded command, to store in the CAS.
    pub command_bytes: Vec<u8>,
    /// Encoded action, to store in the CAS.
    pub action_bytes: Vec<u8>,
}

/// Why a step could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// The recipe has no such step.
    #[error("no step named `{0}` in the recipe")]
    UnknownStep(String),
    /// The resolved mounts are not the step's mounts.
    #[error("resolved mounts of step `{step}` do not match the recipe: {detail}")]
    MountMismatch {
        /// The step.
        step: String,
        /// The first difference found.
        detail: String,
    },
}

/// Compiles `step` with its mounts resolved to trees and merged into
/// `input_root`. `mounts` must list exactly the step's mounts (any order).
pub fn compile_action(
    recipe: &Recipe,
    step: &str,
    input_root: Digest,
    mounts: &[ResolvedMount],
) -> Result<CompiledAction, CompileError> {
    let s = recipe
        .steps
        .get(step)
        .ok_or_else(|| CompileError::UnknownStep(step.to_owned()))?;
    let mut mounts = mounts.to_vec();
    mounts.sort_by(|a, b| a.target.cmp(&b.target));
    check_mounts(step, s, &mounts)?;
    let platform = platform(s, &mounts);
    let command = command(s, platform.clone());
    let command_bytes = command.encode_to_vec();
    let command_digest = Digest::of(&command_bytes);
    let action = proto::Action {
        command_digest: Some(command_digest.into()),
        input_root_digest: Some(input_root.into()),
        timeout: Some(duration(s.timeout)),
        do_not_cache: false,
        salt: Vec::new(),
        platform: Some(platform),
    };
    let action_bytes = action.encode_to_vec();
    Ok(CompiledAction {
        command,
        action_digest: Digest::of(&action_bytes),
        action,
        command_digest,
        command_bytes,
        action_bytes,
    })
}

fn check_mounts(step: &str, s: &Step, mounts: &[ResolvedMount]) -> Result<(), CompileError> {
    let mismatch = |detail: String| CompileError::MountMismatch {
        step: step.to_owned(),
        detail,
    };
    if mounts.len() != s.mounts.len() {
        let msg = format!("{} resolved, {} declared", mounts.len(), s.mounts.len());
        return Err(mismatch(msg));
    }
    for (r, (target, m)) in mounts.iter().zip(&s.mounts) {
        if &r.target != target {
            return Err(mismatch(format!(
                "{} resolved, {target} declared",
                r.target
            )));
        }
        if r.writable != m.writable {
            return Err(mismatch(format!(
                "{target}: writable is {}, declared {}",
                r.writable, m.writable
            )));
        }
    }
    Ok(())
}

fn command(s: &Step, platform: proto::Platform) -> proto::Command {
    let mut env: Vec<(&str, &str)> = s
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.extend(FIXED_ENV);
    env.sort();
    proto::Command {
        arguments: s.run.clone(),
        environment_variables: env
            .into_iter()
            .map(|(name, value)| proto::EnvironmentVariable {
                name: name.into(),
                value: value.into(),
            })
            .collect(),
        platform: Some(platform),
        working_directory: s.workdir.trim_start_matches('/').to_owned(),
        output_paths: vec![OUT_DIR.trim_start_matches('/').to_owned()],
    }
}

/// Everything outside the input root that changes the result.
fn platform(s: &Step, mounts: &[ResolvedMount]) -> proto::Platform {
    let Limits {
        memory,
        processes,
        open_files,
        tmp,
        out,
        out_files,
        log,
    } = s.limits;
    let mut props = vec![
        ("cairn.sandbox".to_owned(), SANDBOX.to_owned()),
        ("cairn.limit.memory".to_owned(), memory.to_string()),
        ("cairn.limit.processes".to_owned(), processes.to_string()),
        ("cairn.limit.open_files".to_owned(), open_files.to_string()),
        ("cairn.limit.tmp".to_owned(), tmp.to_string()),
        ("cairn.limit.out".to_owned(), out.to_string()),
    ];
    // Only when set, so the actions of steps that keep the defaults keep
    // the digests they had before the log and /out's entries had limits.
    if log != crate::model::DEFAULT_LOG {
        props.push(("cairn.limit.log".to_owned(), log.to_string()));
    }
    if out_files != crate::model::DEFAULT_OUT_FILES {
        props.push(("cairn.limit.out_files".to_owned(), out_files.to_string()));
    }
    for m in mounts {
        let mode = if m.writable { "rw" } else { "ro" };
        props.push((
            format!("cairn.mount:{}", m.target),
            format!("{:#}:{mode}", m.tree),
        ));
    }
    for out in &s.outputs {
        props.push((format!("cairn.output:{out}"), "required".to_owned()));
    }
    props.extend(pipeline_properties(s));
    props.sort();
    proto::Platform {
        properties: props
            .into_iter()
            .map(|(name, value)| proto::PlatformProperty { name, value })
            .collect(),
    }
}

/// The pipeline's additions, present only when used (so steps that use
/// none keep the action digests they always had): the platform (the cache
/// never mixes architectures), whether the step is a test and where its
/// report is, and each service exactly as it will be run.
fn pipeline_properties(s: &Step) -> Vec<(String, String)> {
    let mut props = Vec::new();
    if let Some(p) = s.platform {
        props.push(("cairn.platform".to_owned(), p.as_str().to_owned()));
    }
    if s.test {
        let report = s.report.clone().unwrap_or_default();
        props.push(("cairn.test".to_owned(), report));
    }
    for (name, service) in &s.services {
        props.push((
            format!("cairn.service:{name}"),
            service.to_json().to_string(),
        ));
    }
    props
}

fn duration(d: Duration) -> proto::Duration {
    proto::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}
