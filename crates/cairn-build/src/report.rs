//! What a build is asked to do and what it reports back.

use cairn_digest::Digest;

/// How to build.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildOptions {
    /// Run every step again even if cached, and fail if an output differs
    /// from the cached one (bit-for-bit reproducibility).
    pub check: bool,
    /// Neither read nor write the action cache.
    pub no_cache: bool,
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// Its action digest: the cache key, which pins every input.
    pub action_digest: Digest,
    /// The tree of its `/out`.
    pub output: Digest,
    /// Whether the result came from the action cache.
    pub cached: bool,
    /// Whether that cached result came from the remote action cache (it is
    /// now in the local one too).
    pub remote: bool,
    /// Time spent running it (0 when cached).
    pub seconds: f64,
}

/// The result of a build: every step it needed, in the order they ended
/// (the requested step last).
#[derive(Debug, Clone, PartialEq)]
pub struct BuildReport {
    /// One report per step.
    pub steps: Vec<StepReport>,
}

impl BuildReport {
    /// The report of the requested step.
    pub fn last(&self) -> &StepReport {
        self.steps.last().expect("a build has at least one step")
    }
}
