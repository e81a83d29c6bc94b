//! `cairn test [STEP…]` and `cairn build --all`: run a whole pipeline.
//!
//! The work is `Builder::run_pipeline`'s (independent steps in parallel up
//! to `--jobs`, a failed step failing only the steps that need it); this
//! module picks the steps, shows one progress display for all of them
//! (the same as `cairn build`'s), and renders the result: a line per step
//! on stdout (`--json`: an array with each step's status, action digest,
//! output and whether it was cached), and when any step failed, exit 1
//! with each failure's log tail and the failures its JUnit report lists.

use std::sync::Arc;

use anyhow::{bail, Result};
use cairn_build::{BuildError, BuildOptions, Builder, PipelineReport};
use serde::Serialize;

use super::build::{recipe_file, Live};
use super::Workspace;
use crate::cli::{Global, TestArgs};
use crate::output::{emit, Detailed};

/// One step of a pipeline run, as `--json` shows it.
#[derive(Serialize)]
struct StepJson {
    step: String,
    /// `built`, `cached`, `failed` or `skipped`.
    status: &'static str,
    test: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    action_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    cached: bool,
    remote: bool,
    seconds: f64,
    /// Why it failed, or which failed step it needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// A failed test's report failures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failures: Vec<String>,
}

/// Runs `cairn test`.
pub async fn run(global: &Global, args: TestArgs) -> Result<i32> {
    let ws = Workspace::open(global, super::Access::Create).await?;
    let file = recipe_file(&args.recipe)?;
    let reporter = Arc::new(Live::new());
    let builder = ws.builder(&file)?.with_reporter(reporter.clone());
    let targets = if args.steps.is_empty() {
        let tests = builder.test_steps();
        if tests.is_empty() {
            bail!(
                "{} has no test step: mark one with `test = true` (or run every step with `cairn build --all`)",
                file.display()
            );
        }
        tests
    } else {
        args.steps
    };
    let options = BuildOptions {
        check: false,
        no_cache: args.no_cache,
    };
    pipeline(global, &builder, &reporter, &targets, args.jobs, options).await
}

/// Runs `targets` and what they need, renders the report; exit 1 (with
/// every failure's details) when a step failed.
pub(crate) async fn pipeline(
    global: &Global,
    builder: &Builder,
    reporter: &Live,
    targets: &[String],
    jobs: Option<u16>,
    options: BuildOptions,
) -> Result<i32> {
    let jobs = jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let result = builder.run_pipeline(targets, jobs, options).await;
    reporter.bar.finish_and_clear();
    let report = result?;
    let is_test = |name: &str| builder.recipe().steps[name].test;
    let rows = rows(&report, &is_test);
    emit(global.json, &rows, |rows| {
        rows.iter()
            .map(|r| {
                let status = match (r.status, r.test) {
                    ("built" | "cached", true) => "passed",
                    (s, _) => s,
                };
                let cached = if r.cached { " (cached)" } else { "" };
                format!("{status:<8} {}{cached}", r.step)
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    if report.passed() {
        return Ok(0);
    }
    Err(failures(&report).into())
}

fn rows(report: &PipelineReport, is_test: &dyn Fn(&str) -> bool) -> Vec<StepJson> {
    let mut rows = Vec::new();
    for s in &report.steps {
        rows.push(StepJson {
            step: s.name.clone(),
            status: if s.cached { "cached" } else { "built" },
            test: is_test(&s.name),
            action_digest: Some(s.action_digest.to_string()),
            output: Some(s.output.to_string()),
            cached: s.cached,
            remote: s.remote,
            seconds: s.seconds,
            error: None,
            failures: Vec::new(),
        });
    }
    for (name, e) in &report.failed {
        let failures = match e {
            BuildError::StepFailed { failures, .. } => failures.clone(),
            _ => Vec::new(),
        };
        rows.push(failed_row(
            name,
            "failed",
            is_test(name),
            with_causes(e),
            failures,
        ));
    }
    for (name, needs) in &report.skipped {
        let why = format!("not run: it needs step `{needs}`, which did not succeed");
        rows.push(failed_row(name, "skipped", is_test(name), why, Vec::new()));
    }
    rows
}

fn failed_row(
    step: &str,
    status: &'static str,
    test: bool,
    error: String,
    failures: Vec<String>,
) -> StepJson {
    StepJson {
        step: step.to_owned(),
        status,
        test,
        action_digest: None,
        output: None,
        cached: false,
        remote: false,
        seconds: 0.0,
        error: Some(error),
        failures,
    }
}

/// The error of a pipeline with failures: one line naming the failed
/// steps, then each failure's details.
fn failures(report: &PipelineReport) -> Detailed {
    let names: Vec<String> = report
        .failed
        .iter()
        .map(|(n, _)| format!("`{n}`"))
        .collect();
    let mut message = format!("failed: {}", names.join(", "));
    if !report.skipped.is_empty() {
        message.push_str(&format!(
            " ({} step(s) not run because they need a failed step)",
            report.skipped.len()
        ));
    }
    let mut details = Vec::new();
    for (_, e) in &report.failed {
        details.push(with_causes(e));
        details.extend(super::build::failure_details(e));
    }
    for (name, needs) in &report.skipped {
        details.push(format!("step `{name}` not run: it needs `{needs}`"));
    }
    Detailed::new(message, details)
}

/// The error and its causes on one line (`cannot execute "/b/hello" in the
/// sandbox: Exec format error`).
fn with_causes(e: &BuildError) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
