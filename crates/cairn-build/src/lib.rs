//! Builds: from a `cairn.toml` to output trees in the store.
//!
//! A build resolves the recipe's inputs to trees ([`inputs`]: snapshot a
//! path, look up a pinned tree, or fetch and verify a URL), then runs the
//! requested step and the steps it needs in waves ([`Builder`]). Each step
//! is compiled into a REAPI action whose input root is all its mounts
//! grafted into one tree ([`graft`]); the action digest is the key of the
//! action cache ([`cache`]), so a step whose inputs did not change is not
//! run again. A step that must run gets its input trees materialized once
//! into a read-only cache ([`trees`]) and runs in the sandbox ([`run`]);
//! what it leaves in `/out` is snapshotted into the output tree.
//!
//! Builds run in a local directory store. A shared store — a `cairn
//! server` or an S3 bucket — can back it as a remote cache
//! ([`Builder::with_remote`], [`remote`]): a local miss is looked up there
//! and its outputs fetched, and what a build produces is published there,
//! outputs before the action-cache entry.
//!
//! A whole pipeline ([`Builder::run_pipeline`], `pipeline.rs`) runs every
//! step asked for and what it needs, independent steps in parallel up to
//! a job limit; a test step (`test = true`) is cached when it passes and
//! never when it fails, its JUnit report's failures read back ([`junit`]),
//! and [`Builder::require_passed`] is the gate of `[release] requires`.
//! A test's services go into its sandbox plan ([`services`]); a step for
//! another platform runs under the QEMU of its emulator tree ([`platform`]).
//!
//! The crate never prints: progress and live log lines go through the
//! [`Reporter`] trait the CLI implements, and results come back as a
//! [`BuildReport`] the CLI renders.

pub mod cache;
pub mod compare;
pub mod error;
pub mod graft;
pub mod image;
pub mod inputs;
pub mod junit;
pub mod platform;
pub mod remote;
pub mod run;
pub mod services;
pub mod trees;

mod builder;
mod logs;
mod offload;
mod pipeline;
mod report;

pub use builder::Builder;
pub use compare::Difference;
pub use error::BuildError;
pub use inputs::ResolvedInput;
pub use pipeline::PipelineReport;
pub use remote::{Published, Remote};
pub use report::{BuildOptions, BuildReport, StepReport};

use cairn_digest::Digest;

/// Receives what a build does as it happens. Every method has an empty
/// default, so an implementation picks what it shows.
pub trait Reporter: Send + Sync {
    /// An input is being resolved (snapshotted, fetched).
    fn input_started(&self, _input: &str) {}
    /// A step's result came from the action cache.
    fn step_cached(&self, _step: &str, _output: &Digest) {}
    /// A step's result came from the remote action cache (its outputs are
    /// now in the local store). Shown as a cached step unless overridden.
    fn step_fetched(&self, step: &str, output: &Digest) {
        self.step_cached(step, output);
    }
    /// A step started running in the sandbox.
    fn step_started(&self, _step: &str) {}
    /// One line of a running step's output (stdout and stderr interleaved),
    /// escaped for a terminal (control characters and escape sequences made
    /// visible).
    fn log_line(&self, _step: &str, _line: &str) {}
    /// A step ran successfully.
    fn step_finished(&self, _step: &str, _output: &Digest, _seconds: f64) {}
    /// A step of a pipeline failed (the others go on).
    fn step_failed(&self, _step: &str) {}
    /// Something the user should know that does not fail the build (a
    /// result that could not be published to the remote cache, or one the
    /// remote holds with a different output).
    fn warning(&self, _step: &str, _message: &str) {}
}

/// A [`Reporter`] that shows nothing.
pub struct NoReporter;

impl Reporter for NoReporter {}
