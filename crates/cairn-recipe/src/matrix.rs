//! `matrix = { arch = ["amd64", "arm64"] }`: one step written once,
//! expanded into one step per combination of values before anything else
//! is checked.
//!
//! Naming (a contract: other steps, `[release] requires` and the command
//! line use these names): a step `NAME` with a matrix becomes the steps
//! `NAME-V1[-V2…]`, one per combination, the values taken in the order of
//! the matrix's keys sorted by name. `matrix = { arch = ["amd64", "arm64"] }`
//! on `[steps.build]` gives `build-amd64` and `build-arm64`; with a second
//! key `os = ["linux"]` they would be `build-amd64-linux`, …. Values must
//! therefore be name fragments (`[a-z0-9_-]`). In the step's `run`, `env`
//! values, `workdir`, `platform`, `emulator`, `outputs`, `report`, mount
//! sources and services, `${matrix.KEY}` is replaced by the value. `NAME`
//! itself then names the whole group in `[release] requires`.

use std::collections::BTreeMap;

use toml::Spanned;

use crate::error::{ErrorKind, RecipeError, Source};
use crate::wire::{MountWire, StepServiceWire, StepWire};

/// The steps after expansion, and each matrix step's expansions by name.
pub(crate) type Expanded = (
    BTreeMap<String, Spanned<StepWire>>,
    BTreeMap<String, Vec<String>>,
);

/// Expands every matrix step of `steps`.
pub(crate) fn expand(
    src: &Source<'_>,
    steps: BTreeMap<String, Spanned<StepWire>>,
) -> Result<Expanded, RecipeError> {
    let mut out = BTreeMap::new();
    let mut groups = BTreeMap::new();
    for (name, step) in &steps {
        let span = step.span();
        let invalid = |msg: String| src.error(span.clone(), ErrorKind::Invalid(msg));
        let combos = match &step.get_ref().matrix {
            None => vec![(name.clone(), BTreeMap::new())],
            Some(m) => combinations(name, m.get_ref()).map_err(|msg| {
                src.error(
                    m.span(),
                    ErrorKind::Invalid(format!("step `{name}`: {msg}")),
                )
            })?,
        };
        let mut names = Vec::new();
        for (expanded, vars) in combos {
            let mut s = step.get_ref().clone();
            s.matrix = None;
            let s = substitute(s, &vars).map_err(|m| invalid(format!("step `{name}`: {m}")))?;
            if step.get_ref().matrix.is_some() && steps.contains_key(&expanded) {
                return Err(invalid(format!(
                    "step `{name}`: its matrix makes a step `{expanded}`, which is also declared"
                )));
            }
            if out
                .insert(expanded.clone(), Spanned::new(span.clone(), s))
                .is_some()
            {
                return Err(invalid(format!(
                    "step `{name}`: its matrix makes `{expanded}` twice"
                )));
            }
            names.push(expanded);
        }
        if step.get_ref().matrix.is_some() {
            groups.insert(name.clone(), names);
        }
    }
    Ok((out, groups))
}

/// One expansion of a matrix step: its name and the value of each key.
type Combination = (String, BTreeMap<String, String>);

/// Every combination of values: (step name, key → value).
fn combinations(
    name: &str,
    matrix: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<Combination>, String> {
    if matrix.is_empty() {
        return Err("`matrix` needs at least one key".into());
    }
    let mut combos = vec![(name.to_owned(), BTreeMap::new())];
    for (key, values) in matrix {
        if values.is_empty() {
            return Err(format!("matrix key `{key}` has no values"));
        }
        let mut next = Vec::new();
        for (prefix, vars) in &combos {
            for v in values {
                let fragment = !v.is_empty()
                    && v.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    });
                if !fragment {
                    return Err(format!(
                        "matrix value {v:?} of `{key}` cannot be part of a step name: use [a-z0-9_-]"
                    ));
                }
                let mut vars = vars.clone();
                vars.insert(key.clone(), v.clone());
                next.push((format!("{prefix}-{v}"), vars));
            }
        }
        combos = next;
    }
    Ok(combos)
}

/// Replaces `${matrix.KEY}` in `text`.
fn subst(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${matrix.") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "${matrix.".len()..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated `${{matrix.` in {text:?}"))?;
        let key = &after[..end];
        let value = vars.get(key).ok_or_else(|| {
            if vars.is_empty() {
                format!("uses `${{matrix.{key}}}` but has no `matrix`")
            } else {
                format!("uses `${{matrix.{key}}}`, which its matrix does not define")
            }
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

type Vars = BTreeMap<String, String>;

fn spanned(s: &Spanned<String>, vars: &Vars) -> Result<Spanned<String>, String> {
    Ok(Spanned::new(s.span(), subst(s.get_ref(), vars)?))
}

fn argv(a: &Spanned<Vec<String>>, vars: &Vars) -> Result<Spanned<Vec<String>>, String> {
    let v = a.get_ref().iter().map(|x| subst(x, vars));
    Ok(Spanned::new(a.span(), v.collect::<Result<_, _>>()?))
}

fn env(
    e: &Option<Spanned<BTreeMap<String, String>>>,
    vars: &Vars,
) -> Result<Option<Spanned<BTreeMap<String, String>>>, String> {
    let Some(e) = e else { return Ok(None) };
    let mut map = BTreeMap::new();
    for (k, v) in e.get_ref() {
        map.insert(k.clone(), subst(v, vars)?);
    }
    Ok(Some(Spanned::new(e.span(), map)))
}

fn opt(s: &Option<Spanned<String>>, vars: &Vars) -> Result<Option<Spanned<String>>, String> {
    s.as_ref().map(|s| spanned(s, vars)).transpose()
}

/// The step with `${matrix.KEY}` replaced everywhere it may appear.
fn substitute(mut s: StepWire, vars: &Vars) -> Result<StepWire, String> {
    s.run = argv(&s.run, vars)?;
    s.env = env(&s.env, vars)?;
    s.workdir = opt(&s.workdir, vars)?;
    s.platform = opt(&s.platform, vars)?;
    s.emulator = opt(&s.emulator, vars)?;
    s.report = opt(&s.report, vars)?;
    s.outputs = s
        .outputs
        .iter()
        .map(|o| spanned(o, vars))
        .collect::<Result<_, _>>()?;
    for mount in s.mounts.values_mut() {
        let m = mount.get_ref();
        let input = subst(&m.input, vars)?;
        let writable = m.writable;
        *mount = Spanned::new(mount.span(), MountWire { input, writable });
    }
    for service in s.services.values_mut() {
        let w = service.get_ref();
        let new = StepServiceWire {
            step: spanned(&w.step, vars)?,
            run: argv(&w.run, vars)?,
            env: env(&w.env, vars)?,
            health: w.health.clone(),
        };
        *service = Spanned::new(service.span(), new);
    }
    Ok(s)
}
