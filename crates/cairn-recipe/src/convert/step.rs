//! Converting one `[steps.NAME]` table: mounts, paths, command, limits.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::action::FIXED_ENV_NAMES;
use crate::error::{ErrorKind, RecipeError, Source};
use crate::model::{Input, Limits, Mount, MountSource, Step, DEFAULT_TIMEOUT};
use crate::name::{normalize_abs, normalize_rel, reserved_prefix, InputName, Name, StepName};
use crate::wire::{LimitsWire, MountWire, StepWire};

/// The names a step may refer to.
pub(crate) struct Known<'a> {
    pub inputs: &'a BTreeMap<InputName, Input>,
    pub steps: &'a BTreeMap<StepName, Range<usize>>,
}

/// Converts one step named `key`.
pub(crate) fn convert(
    src: &Source<'_>,
    known: &Known<'_>,
    key: &str,
    w: StepWire,
) -> Result<Step, RecipeError> {
    let mut mounts = BTreeMap::new();
    for (target, mount) in w.mounts {
        let span = mount.span();
        let path = mount_target(src, &target, span.clone())?;
        let mount = resolve(src, known, key, mount.into_inner(), span.clone())?;
        if mounts.insert(path.clone(), mount).is_some() {
            return Err(src.error(
                span,
                ErrorKind::DuplicateMount {
                    step: key.into(),
                    path,
                },
            ));
        }
    }
    let workdir = match w.workdir {
        Some(wd) => {
            normalize_abs(wd.get_ref()).map_err(|m| src.error(wd.span(), ErrorKind::Invalid(m)))?
        }
        None => "/".to_owned(),
    };
    let mut outputs = Vec::new();
    for out in w.outputs {
        let path = normalize_rel(out.get_ref())
            .map_err(|m| src.error(out.span(), ErrorKind::Invalid(m)))?;
        outputs.push(path);
    }
    outputs.sort();
    outputs.dedup();
    Ok(Step {
        mounts,
        workdir,
        run: super::argv(src, &format!("step `{key}`: `run`"), w.run)?,
        env: super::env(src, w.env, &FIXED_ENV_NAMES)?,
        timeout: w.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
        limits: limits(w.limits),
        outputs,
    })
}

fn mount_target(src: &Source<'_>, target: &str, span: Range<usize>) -> Result<String, RecipeError> {
    let path = normalize_abs(target)
        .map_err(|m| src.error(span.clone(), ErrorKind::Invalid(format!("mount {m}"))))?;
    if let Some(reserved) = reserved_prefix(&path) {
        let msg = format!("cannot mount at {path}: {reserved} is provided by the sandbox");
        return Err(src.error(span, ErrorKind::Invalid(msg)));
    }
    Ok(path)
}

fn resolve(
    src: &Source<'_>,
    known: &Known<'_>,
    step: &str,
    w: MountWire,
    span: Range<usize>,
) -> Result<Mount, RecipeError> {
    let source = if let Some(other) = w.input.strip_prefix("steps.") {
        let name = Name::new(other).filter(|n| known.steps.contains_key(n));
        let name = name.ok_or_else(|| {
            let kind = ErrorKind::UndefinedStep {
                context: format!("step `{step}`"),
                step: other.into(),
            };
            src.error(span.clone(), kind)
        })?;
        MountSource::Step(name)
    } else {
        let name = Name::new(&w.input).filter(|n| known.inputs.contains_key(n));
        let name = name.ok_or_else(|| {
            let kind = ErrorKind::UndefinedInput {
                step: step.into(),
                input: w.input.clone(),
            };
            src.error(span.clone(), kind)
        })?;
        MountSource::Input(name)
    };
    Ok(Mount {
        source,
        writable: w.writable,
    })
}

fn limits(w: LimitsWire) -> Limits {
    let d = Limits::default();
    Limits {
        memory: w.memory.map_or(d.memory, |b| b.0),
        processes: w.processes.unwrap_or(d.processes),
        open_files: w.open_files.unwrap_or(d.open_files),
        tmp: w.tmp.map_or(d.tmp, |b| b.0),
        out: w.out.map_or(d.out, |b| b.0),
    }
}
