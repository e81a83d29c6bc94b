//! Errors that point at the place in `cairn.toml` that is wrong.
//!
//! A recipe is written by hand, so every error names the file, the line and
//! the column (1-based, counted in characters) and says what was expected.
//! Locations come from byte spans: the ones `toml` reports for syntax and
//! type errors, and the ones kept with [`toml::Spanned`] for the checks made
//! after deserializing (undefined names, cycles, mount clashes).

use std::fmt;
use std::ops::Range;

/// A 1-based line and column in the recipe text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text` (clamped to the text, and to
    /// the previous character boundary).
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Self {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// A recipe that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RecipeError {
    /// The file name shown to the user (e.g. `cairn.toml`).
    pub file: String,
    /// Where in the file, when known.
    pub location: Option<Location>,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(at) => write!(f, "{}:{}:{}: {}", self.file, at.line, at.column, self.kind),
            None => write!(f, "{}: {}", self.file, self.kind),
        }
    }
}

/// What is wrong with a recipe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// TOML syntax, a wrong type, an unknown or missing key (the message of
    /// the TOML parser, which says what was expected).
    #[error("{0}")]
    Toml(String),
    /// A value that has the right type but not an allowed form.
    #[error("{0}")]
    Invalid(String),
    /// A name of a service, input, step or socket outside `[a-z0-9][a-z0-9_-]*`.
    #[error("invalid {what} name {name:?}: expected [a-z0-9][a-z0-9_-]*")]
    BadName {
        /// `input`, `step`, `socket` or `service`.
        what: &'static str,
        /// The offending name.
        name: String,
    },
    /// A mount of an input that is not declared.
    #[error("step `{step}` mounts undefined input `{input}`")]
    UndefinedInput {
        /// The mounting step.
        step: String,
        /// The missing input.
        input: String,
    },
    /// A reference to a step that is not declared.
    #[error("{context} refers to undefined step `{step}`")]
    UndefinedStep {
        /// Who refers to it (``step `build` ``, `[release]`).
        context: String,
        /// The missing step.
        step: String,
    },
    /// Steps that mount each other's outputs in a loop.
    #[error("steps form a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// Two mounts that land on the same sandbox path.
    #[error("step `{step}` mounts two things at {path}")]
    DuplicateMount {
        /// The step.
        step: String,
        /// The normalized sandbox path.
        path: String,
    },
    /// A health check on a socket the release does not declare.
    #[error("health check uses socket `{socket}`, which is not one of the release's sockets {sockets:?}")]
    UnknownSocket {
        /// The socket named by the health check.
        socket: String,
        /// The declared sockets.
        sockets: Vec<String>,
    },
}

/// Builds located errors against one recipe text.
pub(crate) struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    /// An error at byte span `span`.
    pub fn error(&self, span: Range<usize>, kind: ErrorKind) -> RecipeError {
        RecipeError {
            file: self.file.to_owned(),
            location: Some(Location::of_offset(self.text, span.start)),
            kind,
        }
    }

    /// Converts a TOML deserialization error.
    pub fn toml(&self, err: &toml::de::Error) -> RecipeError {
        RecipeError {
            file: self.file.to_owned(),
            location: err.span().map(|s| Location::of_offset(self.text, s.start)),
            kind: ErrorKind::Toml(err.message().trim_end().to_owned()),
        }
    }
}
