//! Whole pipelines: every step of a recipe, or every test step and the
//! steps it needs, with independent steps running in parallel up to a job
//! limit; and the gate `[release] requires` puts before signing.
//!
//! Steps start as soon as the steps they mount have ended (not wave by
//! wave), so a long step does not hold back unrelated ones. The job limit
//! counts sandboxes, not steps: every step whose dependencies are done
//! starts at once (its inputs grafted, its action compiled and looked up
//! in the cache, so a cached step never waits for a slot), and only its
//! sandbox waits for one of `jobs` slots, given back the moment the
//! sandbox ends: storing the output and recording the result (a `syncfs`
//! and `fsync`s, which on a busy disk take as long as a short step) then
//! overlap with the next step's run instead of idling a CPU. A failed step
//! fails only the steps that need it: the others go on, and the report
//! lists every failure at once, as a test run should. A test that passes is
//! cached like any step (its action digest pins every input), and a failed
//! one never is, which is what the release gate reads: a required test has
//! passed on the release's inputs exactly when its action, compiled from
//! those inputs, has a complete entry in the action cache.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cairn_digest::Digest;
use cairn_recipe::{MountSource, StepName};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;

use crate::builder::{Beside, Mode};
use crate::{BuildError, BuildOptions, Builder, StepReport};

/// What a pipeline run did, step by step.
#[derive(Debug, Default)]
pub struct PipelineReport {
    /// The steps that succeeded (ran, or came from the cache), in the order
    /// they ended.
    pub steps: Vec<StepReport>,
    /// The steps that failed, with why, in the order they ended.
    pub failed: Vec<(String, BuildError)>,
    /// The steps not run because a step they need failed: (step, the
    /// failed or skipped step it needs).
    pub skipped: Vec<(String, String)>,
}

impl PipelineReport {
    /// Whether every step succeeded.
    pub fn passed(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }
}

impl Builder {
    /// Every step of the recipe, sorted.
    pub fn all_steps(&self) -> Vec<String> {
        self.step_names()
    }

    /// The recipe's test steps (`test = true`), sorted.
    pub fn test_steps(&self) -> Vec<String> {
        let steps = &self.recipe().steps;
        steps
            .iter()
            .filter(|(_, s)| s.test)
            .map(|(n, _)| n.to_string())
            .collect()
    }

    /// Runs `targets` and every step they need, at most `jobs` at a time.
    /// Fails only when the run itself cannot start (an unknown step, an
    /// input that cannot be resolved); failed steps are in the report.
    pub async fn run_pipeline(
        &self,
        targets: &[String],
        jobs: usize,
        options: BuildOptions,
    ) -> Result<PipelineReport, BuildError> {
        let needs = self.needs(targets)?;
        let all: Vec<String> = needs.keys().cloned().collect();
        self.resolve_inputs(std::slice::from_ref(&all)).await?;
        let mode = Mode::of(options);
        let slots = Arc::new(Semaphore::new(jobs.max(1)));
        let mut report = PipelineReport::default();
        let mut outputs: BTreeMap<String, Digest> = BTreeMap::new();
        let mut pending: BTreeSet<String> = all.into_iter().collect();
        let mut running = FuturesUnordered::new();
        loop {
            skip_dependents(&needs, &mut pending, &mut report);
            let ready: Vec<String> = pending
                .iter()
                .filter(|s| needs[*s].iter().all(|d| outputs.contains_key(d)))
                .cloned()
                .collect();
            for name in ready {
                pending.remove(&name);
                let (outs, slots) = (outputs.clone(), &slots);
                running.push(async move {
                    let result = self.step(&name, &outs, mode, Beside::Slots(slots)).await;
                    (name, result)
                });
            }
            let Some((name, result)) = running.next().await else {
                break;
            };
            match result {
                Ok(step) => {
                    outputs.insert(name, step.output);
                    report.steps.push(step);
                }
                Err(e) => {
                    self.reporter.step_failed(&name);
                    report.failed.push((name, e));
                }
            }
        }
        self.settle().await;
        Ok(report)
    }

    /// Refuses unless every step of `tests` has passed on the inputs it
    /// has now: the steps it needs are built (from the cache when they
    /// can be), then its own action must be a complete cache hit. Nothing
    /// of the test itself runs. Returns each test's report (its action
    /// digest and output, in the order of `tests`): what the release's
    /// provenance records as the tests that gated it.
    pub async fn require_passed(&self, tests: &[StepName]) -> Result<Vec<StepReport>, BuildError> {
        let mut passed = Vec::with_capacity(tests.len());
        for test in tests {
            let test = test.as_str();
            let report = self
                .build_with(test, |s| {
                    if s == test {
                        Mode::CachedOnly
                    } else {
                        Mode::Normal
                    }
                })
                .await?;
            passed.push(report.last().clone());
        }
        Ok(passed)
    }

    /// Each step `targets` need (themselves included), with the steps it
    /// mounts.
    fn needs(&self, targets: &[String]) -> Result<BTreeMap<String, Vec<String>>, BuildError> {
        let steps = &self.recipe().steps;
        let mut needs = BTreeMap::new();
        let mut todo: Vec<String> = targets.to_vec();
        while let Some(name) = todo.pop() {
            if needs.contains_key(&name) {
                continue;
            }
            let Some(step) = steps.get(name.as_str()) else {
                return Err(BuildError::UnknownStep {
                    step: name,
                    steps: self.step_names(),
                });
            };
            let deps: Vec<String> = step
                .mounts
                .values()
                .filter_map(|m| match &m.source {
                    MountSource::Step(s) => Some(s.to_string()),
                    MountSource::Input(_) => None,
                })
                .collect();
            todo.extend(deps.iter().cloned());
            needs.insert(name, deps);
        }
        Ok(needs)
    }
}

/// Moves every pending step that needs a failed or skipped step to the
/// skipped list (repeatedly: a skip skips what needs it in turn).
fn skip_dependents(
    needs: &BTreeMap<String, Vec<String>>,
    pending: &mut BTreeSet<String>,
    report: &mut PipelineReport,
) {
    loop {
        let dead: BTreeSet<&String> = report
            .failed
            .iter()
            .map(|(n, _)| n)
            .chain(report.skipped.iter().map(|(n, _)| n))
            .collect();
        let newly: Vec<(String, String)> = pending
            .iter()
            .filter_map(|s| {
                let dep = needs[s].iter().find(|d| dead.contains(d))?;
                Some((s.clone(), dep.clone()))
            })
            .collect();
        if newly.is_empty() {
            return;
        }
        for (s, _) in &newly {
            pending.remove(s);
        }
        report.skipped.extend(newly);
    }
}
