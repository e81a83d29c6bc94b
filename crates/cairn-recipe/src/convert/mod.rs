//! From the literal file ([`crate::wire`]) to the validated [`Recipe`].
//!
//! Each check reports at the span of the value it judges. The step graph is
//! checked last, once every mount resolved, so that a cycle error can name
//! the whole cycle.

mod deploy;
mod release;
mod step;

use std::collections::BTreeMap;
use std::ops::Range;

use cairn_digest::DigestRef;
use toml::Spanned;

use crate::error::{ErrorKind, RecipeError, Source};
use crate::model::{Input, Recipe};
use crate::name::Name;
use crate::wire::{InputWire, RecipeWire};

/// Converts and validates the whole file.
pub(crate) fn recipe(src: &Source<'_>, wire: RecipeWire) -> Result<Recipe, RecipeError> {
    let service = name(src, "service", &wire.service.name)?;
    let mut inputs = BTreeMap::new();
    for (key, input) in wire.inputs {
        let n = name_at(src, "input", &key, input.span())?;
        inputs.insert(n, convert_input(src, &key, input)?);
    }
    let (wire_steps, groups) = crate::matrix::expand(src, wire.steps)?;
    let mut spans = BTreeMap::new();
    for (key, step) in &wire_steps {
        spans.insert(name_at(src, "step", key, step.span())?, step.span());
    }
    let known = step::Known {
        inputs: &inputs,
        steps: &spans,
    };
    let mut steps = BTreeMap::new();
    for (key, step) in wire_steps {
        let n = Name::new(&key).expect("checked above");
        steps.insert(n, step::convert(src, &known, &key, step.into_inner())?);
    }
    crate::graph::check_acyclic(&steps).map_err(|cycle| {
        let first = spans.get(cycle[0].as_str()).cloned().unwrap_or(0..0);
        src.error(
            first,
            ErrorKind::Cycle(cycle.iter().map(|n| n.to_string()).collect()),
        )
    })?;
    let release = wire
        .release
        .map(|r| release::convert(src, r, &steps, &groups))
        .transpose()?;
    let deploy = wire.deploy.map(|d| deploy::convert(src, d)).transpose()?;
    Ok(Recipe {
        service,
        inputs,
        steps,
        release,
        deploy,
    })
}

fn convert_input(
    src: &Source<'_>,
    key: &str,
    wire: Spanned<InputWire>,
) -> Result<Input, RecipeError> {
    let span = wire.span();
    let w = wire.into_inner();
    let invalid = |msg: String| src.error(span.clone(), ErrorKind::Invalid(msg));
    let forms = [
        w.path.is_some(),
        w.tree.is_some(),
        w.url.is_some(),
        w.oci.is_some(),
    ];
    if forms.iter().filter(|f| **f).count() != 1 {
        return Err(invalid(format!(
            "input `{key}` must have exactly one of `path`, `tree`, `url` or `oci`"
        )));
    }
    let stray = |field: &str, allowed_with: &str| {
        invalid(format!(
            "input `{key}`: `{field}` is only allowed with `{allowed_with}`"
        ))
    };
    if w.path.is_none() && (w.exclude.is_some() || w.gitignore.is_some()) {
        return Err(stray(
            if w.exclude.is_some() {
                "exclude"
            } else {
                "gitignore"
            },
            "path",
        ));
    }
    if w.url.is_none() && (w.digest.is_some() || w.unpack.is_some()) {
        return Err(stray(
            if w.digest.is_some() {
                "digest"
            } else {
                "unpack"
            },
            "url",
        ));
    }
    if let Some(path) = w.path {
        return Ok(Input::Path {
            path,
            exclude: w.exclude.unwrap_or_default(),
            gitignore: w.gitignore.unwrap_or(false),
        });
    }
    if let Some(tree) = w.tree {
        return Ok(Input::Tree(digest(src, &tree)?));
    }
    if let Some(image) = w.oci {
        return oci_input(src, key, image);
    }
    let url = w.url.unwrap_or_default();
    check_url(&url, &["http://", "https://", "file://"]).map_err(invalid)?;
    let d = w.digest.ok_or_else(|| {
        invalid(format!(
            "input `{key}`: a `url` needs a `digest = \"sha256:…\"`"
        ))
    })?;
    Ok(Input::Fetch {
        url,
        digest: digest(src, &d)?,
        unpack: w.unpack.unwrap_or(false),
    })
}

/// `oci = "REGISTRY/REPO@sha256:<hex>"` or `"./layout@sha256:<hex>"`: the
/// image must be pinned by its manifest digest; a tag alone is refused.
fn oci_input(src: &Source<'_>, key: &str, image: Spanned<String>) -> Result<Input, RecipeError> {
    let span = image.span();
    let text = image.into_inner();
    let invalid = |msg: String| src.error(span.clone(), ErrorKind::Invalid(msg));
    let Some((name, pin)) = text.rsplit_once('@') else {
        return Err(invalid(format!(
            "input `{key}`: image {text:?} is not pinned: a tag can move, name the manifest as REGISTRY/REPO@sha256:<hex>"
        )));
    };
    let digest: DigestRef = pin
        .parse()
        .ok()
        .filter(|d: &DigestRef| d.size.is_none())
        .ok_or_else(|| invalid(format!("input `{key}`: {pin:?} is not sha256:<64 hex>")))?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(invalid(format!("input `{key}`: {text:?} names no image")));
    }
    Ok(Input::Oci {
        image: text,
        digest,
    })
}

/// Checks that `url` starts with one of `schemes` and has more after it.
pub(crate) fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    match schemes.iter().find_map(|s| url.strip_prefix(s)) {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(format!(
            "invalid url {url:?}: expected one of {schemes:?} followed by a location"
        )),
    }
}

/// Parses a `sha256:<hex>[/size]` value.
pub(crate) fn digest(src: &Source<'_>, text: &Spanned<String>) -> Result<DigestRef, RecipeError> {
    text.get_ref()
        .parse()
        .map_err(|e| src.error(text.span(), ErrorKind::Invalid(format!("{e}"))))
}

/// Validates a name kept with its span.
pub(crate) fn name(
    src: &Source<'_>,
    what: &'static str,
    text: &Spanned<String>,
) -> Result<Name, RecipeError> {
    name_at(src, what, text.get_ref(), text.span())
}

/// Validates a name, reporting at `span`.
pub(crate) fn name_at(
    src: &Source<'_>,
    what: &'static str,
    text: &str,
    span: Range<usize>,
) -> Result<Name, RecipeError> {
    Name::new(text).ok_or_else(|| {
        src.error(
            span,
            ErrorKind::BadName {
                what,
                name: text.to_owned(),
            },
        )
    })
}

/// Checks an environment map: names without `=` or NUL, none of `fixed`.
pub(crate) fn env(
    src: &Source<'_>,
    wire: Option<Spanned<BTreeMap<String, String>>>,
    fixed: &[&str],
) -> Result<BTreeMap<String, String>, RecipeError> {
    let Some(wire) = wire else {
        return Ok(BTreeMap::new());
    };
    let span = wire.span();
    let map = wire.into_inner();
    for (k, v) in &map {
        let msg = if k.is_empty() || k.contains(['=', '\0']) {
            format!("invalid environment variable name {k:?}")
        } else if fixed.contains(&k.as_str()) {
            format!("environment variable {k} is fixed by cairn and cannot be set")
        } else if v.contains('\0') {
            format!("environment variable {k} contains NUL")
        } else {
            continue;
        };
        return Err(src.error(span, ErrorKind::Invalid(msg)));
    }
    Ok(map)
}

/// Checks that a command line is not empty.
pub(crate) fn argv(
    src: &Source<'_>,
    what: &str,
    wire: Spanned<Vec<String>>,
) -> Result<Vec<String>, RecipeError> {
    if wire.get_ref().is_empty() {
        return Err(src.error(
            wire.span(),
            ErrorKind::Invalid(format!("{what} must not be empty")),
        ));
    }
    Ok(wire.into_inner())
}
