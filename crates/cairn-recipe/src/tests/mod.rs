//! Tests of parsing, validation, planning and action compilation.

mod action;
mod errors;
mod parse;
mod pipeline;

use crate::Recipe;

/// Parses `text` as `cairn.toml`, expecting an error; returns its Display.
fn error_of(text: &str) -> String {
    match Recipe::parse("cairn.toml", text) {
        Ok(r) => panic!("expected an error, parsed {r:?}"),
        Err(e) => e.to_string(),
    }
}

/// Parses `text`, which must be valid.
fn parse(text: &str) -> Recipe {
    Recipe::parse("cairn.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

/// A minimal recipe header: a service and a pinned rootfs input.
const HEADER: &str = r#"[service]
name = "t"

[inputs.rootfs]
tree = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
"#;
