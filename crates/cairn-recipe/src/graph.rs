//! The step graph: steps depend on the steps whose `/out` they mount.
//!
//! Validation rejects cycles (naming one), so [`Recipe::plan`] can order
//! any step's dependencies into waves: every step of a wave depends only on
//! steps of earlier waves, so a wave's steps can run in parallel.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{MountSource, Recipe, Step};
use crate::name::StepName;

/// The steps `step` mounts the output of, sorted, without repeats.
pub fn dependencies(step: &Step) -> BTreeSet<&StepName> {
    step.mounts
        .values()
        .filter_map(|m| match &m.source {
            MountSource::Step(s) => Some(s),
            MountSource::Input(_) => None,
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Visiting,
    Done,
}

/// Ok if the steps form a DAG; otherwise one cycle as `[a, b, …, a]`.
pub(crate) fn check_acyclic(steps: &BTreeMap<StepName, Step>) -> Result<(), Vec<StepName>> {
    let mut marks = BTreeMap::new();
    for name in steps.keys() {
        let mut path = Vec::new();
        visit(steps, name, &mut marks, &mut path)?;
    }
    Ok(())
}

fn visit<'a>(
    steps: &'a BTreeMap<StepName, Step>,
    name: &'a StepName,
    marks: &mut BTreeMap<&'a StepName, Mark>,
    path: &mut Vec<&'a StepName>,
) -> Result<(), Vec<StepName>> {
    match marks.get(name) {
        Some(Mark::Done) => return Ok(()),
        Some(Mark::Visiting) => {
            let start = path.iter().position(|n| *n == name).unwrap_or(0);
            let mut cycle: Vec<StepName> = path[start..].iter().map(|n| (*n).clone()).collect();
            cycle.push(name.clone());
            return Err(cycle);
        }
        None => {}
    }
    marks.insert(name, Mark::Visiting);
    path.push(name);
    if let Some(step) = steps.get(name) {
        for dep in dependencies(step) {
            visit(steps, dep, marks, path)?;
        }
    }
    path.pop();
    marks.insert(name, Mark::Done);
    Ok(())
}

/// `plan` was asked for a step the recipe does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no step named `{0}` in the recipe")]
pub struct UnknownStep(pub String);

impl Recipe {
    /// The steps needed to build `step`, in waves: every step of a wave
    /// depends only on earlier waves. The last wave is `[step]`; steps that
    /// `step` does not need are left out. Waves are sorted by name.
    pub fn plan(&self, step: &str) -> Result<Vec<Vec<StepName>>, UnknownStep> {
        let (root, _) = self
            .steps
            .get_key_value(step)
            .ok_or_else(|| UnknownStep(step.to_owned()))?;
        let mut depth = BTreeMap::new();
        self.depth_of(root, &mut depth);
        let mut waves = vec![Vec::new(); depth.values().max().map_or(0, |d| d + 1)];
        for (name, d) in depth {
            waves[d].push(name.clone());
        }
        Ok(waves)
    }

    /// Length of the longest dependency chain below `name` (0 for a step
    /// with no step dependencies), memoized in `depth`.
    fn depth_of<'a>(
        &'a self,
        name: &'a StepName,
        depth: &mut BTreeMap<&'a StepName, usize>,
    ) -> usize {
        if let Some(d) = depth.get(name) {
            return *d;
        }
        let deps = self.steps.get(name).map(dependencies).unwrap_or_default();
        let d = deps
            .into_iter()
            .map(|dep| self.depth_of(dep, depth) + 1)
            .max()
            .unwrap_or(0);
        depth.insert(name, d);
        d
    }
}
