//! Converting one `[steps.NAME]` table: mounts, paths, command, limits.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::action::FIXED_ENV_NAMES;
use crate::error::{ErrorKind, RecipeError, Source};
use toml::Spanned;

use crate::model::{
    Input, Limits, Mount, MountSource, Platform, Probe, Service, Step, DEFAULT_TIMEOUT,
    EMULATOR_MOUNT, SERVICES_DIR,
};
use crate::name::{normalize_abs, normalize_rel, reserved_prefix, InputName, Name, StepName};
use crate::platform::PLATFORMS;
use crate::wire::{LimitsWire, MountWire, StepServiceWire, StepWire};

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
    let platform = w.platform.map(|p| platform(src, key, p)).transpose()?;
    if let Some(e) = w.emulator {
        let span = e.span();
        let wire = MountWire {
            input: e.into_inner(),
            writable: false,
        };
        let mount = resolve(src, known, key, wire, span.clone())?;
        if !matches!(mount.source, MountSource::Input(_)) || platform.is_none() {
            let msg = format!(
                "step `{key}`: `emulator` names an input holding qemu-<arch>-static, for a step with a `platform`"
            );
            return Err(src.error(span, ErrorKind::Invalid(msg)));
        }
        mounts.insert(EMULATOR_MOUNT.to_owned(), mount);
    }
    let mut services = BTreeMap::new();
    for (name, wire) in w.services {
        let n = super::name_at(src, "service", &name, wire.span())?;
        let (service, mount) = service(src, known, key, &n, wire)?;
        let path = format!("{SERVICES_DIR}/{n}");
        if mounts.insert(path.clone(), mount).is_some() {
            let span = known.steps.get(key).cloned().unwrap_or(0..0);
            let kind = ErrorKind::DuplicateMount {
                step: key.into(),
                path,
            };
            return Err(src.error(span, kind));
        }
        services.insert(n, service);
    }
    let report = match w.report {
        Some(r) if !w.test => {
            let msg = format!("step `{key}`: `report` is only for test steps (`test = true`)");
            return Err(src.error(r.span(), ErrorKind::Invalid(msg)));
        }
        Some(r) => Some(
            normalize_rel(r.get_ref()).map_err(|m| src.error(r.span(), ErrorKind::Invalid(m)))?,
        ),
        None => None,
    };
    Ok(Step {
        mounts,
        workdir,
        run: super::argv(src, &format!("step `{key}`: `run`"), w.run)?,
        env: super::env(src, w.env, &FIXED_ENV_NAMES)?,
        timeout: w.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
        limits: limits(w.limits),
        outputs,
        test: w.test,
        report,
        platform,
        services,
    })
}

fn platform(src: &Source<'_>, key: &str, p: Spanned<String>) -> Result<Platform, RecipeError> {
    Platform::parse(p.get_ref()).ok_or_else(|| {
        let msg = format!(
            "step `{key}`: unknown platform {:?}, expected one of {PLATFORMS:?}",
            p.get_ref()
        );
        src.error(p.span(), ErrorKind::Invalid(msg))
    })
}

/// One `[steps.KEY.services.NAME]`: the service and the mount of its artifact.
fn service(
    src: &Source<'_>,
    known: &Known<'_>,
    key: &str,
    name: &Name,
    wire: Spanned<StepServiceWire>,
) -> Result<(Service, Mount), RecipeError> {
    let span = wire.span();
    let w = wire.into_inner();
    let invalid = |msg: String| src.error(span.clone(), ErrorKind::Invalid(msg));
    if !w.step.get_ref().starts_with("steps.") {
        return Err(invalid(format!(
            "step `{key}`: service `{name}`: `step` must be \"steps.NAME\", the step whose output is its artifact"
        )));
    }
    let mount_wire = MountWire {
        input: w.step.get_ref().clone(),
        writable: false,
    };
    let mount = resolve(src, known, key, mount_wire, w.step.span())?;
    let MountSource::Step(step) = mount.source.clone() else {
        unreachable!("a steps. reference resolves to a step");
    };
    let health = match w.health {
        Some(h) if h.get_ref().http.as_deref().is_some_and(|p| p.starts_with('/')) => {
            return Err(src.error(
                h.span(),
                ErrorKind::Invalid(format!(
                    "service `{name}`: a service holds no named sockets; write the health check as http = \"http://127.0.0.1:PORT/path\""
                )),
            ))
        }
        Some(h) => Some(super::release::health(src, h, &[])?),
        None => None,
    };
    if let Some(Probe::Http(url)) = health.as_ref().map(|h| &h.probe) {
        if url.starts_with("https://") {
            return Err(invalid(format!(
                "service `{name}`: https probes are not supported"
            )));
        }
    }
    let service = Service {
        step,
        run: super::argv(src, &format!("service `{name}`: `run`"), w.run)?,
        env: super::env(src, w.env, &FIXED_ENV_NAMES)?,
        health,
    };
    Ok((service, mount))
}

fn mount_target(src: &Source<'_>, target: &str, span: Range<usize>) -> Result<String, RecipeError> {
    let path = normalize_abs(target)
        .map_err(|m| src.error(span.clone(), ErrorKind::Invalid(format!("mount {m}"))))?;
    if path == "/.cairn" || path.starts_with("/.cairn/") {
        let msg =
            format!("cannot mount at {path}: /.cairn is where cairn mounts a step's emulator");
        return Err(src.error(span, ErrorKind::Invalid(msg)));
    }
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
        out_files: w.out_files.unwrap_or(d.out_files),
        log: w.log.map_or(d.log, |b| b.0),
    }
}
