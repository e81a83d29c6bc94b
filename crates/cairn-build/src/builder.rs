//! [`Builder`]: a recipe, a store, and the order in which steps run.
//!
//! A build plans the requested step into waves ([`Recipe::plan`]),
//! resolves every input those steps mount (once per builder), then runs
//! wave after wave; the steps of one wave run concurrently (each sandbox on
//! its own blocking thread). For each step it grafts the mounts into an
//! input root, compiles the action, asks the action cache, and runs the
//! step only on a miss (or always, under `check` / `no_cache`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cairn_digest::Digest;
use cairn_recipe::{compile_action, MountSource, Recipe, ResolvedMount};
use cairn_store::{FsStore, Store};
use futures::future::try_join_all;

use crate::cache::{self, CachedResult};
use crate::compare::differences;
use crate::error::BuildError;
use crate::inputs::{self, blocking, ResolvedInput};
use crate::run::{self, Job, Ran};
use crate::{graft, BuildOptions, BuildReport, NoReporter, Reporter, StepReport};

/// How one step treats the action cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Use a complete cached result; else run and record.
    Normal,
    /// Run even if cached, and compare with the cached output.
    Check,
    /// Run; neither read nor write the cache.
    Uncached,
}

/// Builds the steps of one recipe into one store.
pub struct Builder {
    store: Store,
    fs: Arc<FsStore>,
    recipe: Arc<Recipe>,
    recipe_dir: PathBuf,
    reporter: Arc<dyn Reporter>,
    inputs: Mutex<HashMap<String, ResolvedInput>>,
}

impl Builder {
    /// A builder for `<recipe_dir>/cairn.toml`.
    pub fn new(store: Store, recipe_dir: &Path) -> Result<Self, BuildError> {
        Self::from_file(store, &recipe_dir.join("cairn.toml"))
    }

    /// A builder for the recipe in `file`; path inputs are relative to its
    /// directory.
    pub fn from_file(store: Store, file: &Path) -> Result<Self, BuildError> {
        let fs = store.local.clone().ok_or(BuildError::NotLocal)?;
        let text = std::fs::read_to_string(file).map_err(|source| BuildError::ReadRecipe {
            path: file.to_owned(),
            source,
        })?;
        let recipe = Recipe::parse(&file.display().to_string(), &text)?;
        let dir = file.parent().filter(|p| !p.as_os_str().is_empty());
        Ok(Self {
            store,
            fs,
            recipe: Arc::new(recipe),
            recipe_dir: dir.unwrap_or(Path::new(".")).to_owned(),
            reporter: Arc::new(NoReporter),
            inputs: Mutex::new(HashMap::new()),
        })
    }

    /// Reports progress and log lines to `reporter`.
    pub fn with_reporter(mut self, reporter: Arc<dyn Reporter>) -> Self {
        self.reporter = reporter;
        self
    }

    /// The parsed recipe.
    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// The step built when none is named: the release's step, else the only
    /// step.
    pub fn default_step(&self) -> Result<String, BuildError> {
        if let Some(release) = &self.recipe.release {
            return Ok(release.step.to_string());
        }
        match self.step_names().as_slice() {
            [only] => Ok(only.clone()),
            steps => Err(BuildError::NoDefaultStep {
                steps: steps.to_vec(),
            }),
        }
    }

    /// Builds `step` and the steps it needs.
    pub async fn build(
        &self,
        step: &str,
        options: BuildOptions,
    ) -> Result<BuildReport, BuildError> {
        let mode = match (options.check, options.no_cache) {
            (true, _) => Mode::Check,
            (false, true) => Mode::Uncached,
            (false, false) => Mode::Normal,
        };
        self.build_with(step, |_| mode).await
    }

    /// Runs `step` again without the action cache (its dependencies may come
    /// from it) and returns its output tree, recording nothing: the
    /// independent rebuild `cairn verify` compares with a release.
    pub async fn rebuild(&self, step: &str) -> Result<Digest, BuildError> {
        let report = self
            .build_with(step, |s| {
                if s == step {
                    Mode::Uncached
                } else {
                    Mode::Normal
                }
            })
            .await?;
        Ok(report.last().output)
    }

    /// Every input the steps needed for `step` mount, resolved, by name: the
    /// materials of `step`'s provenance.
    pub async fn inputs(&self, step: &str) -> Result<Vec<ResolvedInput>, BuildError> {
        let waves = self.plan(step)?;
        self.resolve_inputs(&waves).await?;
        let memo = self.inputs.lock().expect("inputs lock");
        let mut all: Vec<ResolvedInput> = memo.values().cloned().collect();
        all.retain(|i| self.needed_inputs(&waves).contains(&i.name));
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    async fn build_with(
        &self,
        step: &str,
        mode: impl Fn(&str) -> Mode,
    ) -> Result<BuildReport, BuildError> {
        let waves = self.plan(step)?;
        self.resolve_inputs(&waves).await?;
        let mut outputs = BTreeMap::new();
        let mut steps = Vec::new();
        for wave in &waves {
            let runs = wave.iter().map(|s| self.step(s, &outputs, mode(s)));
            for report in try_join_all(runs).await? {
                outputs.insert(report.name.clone(), report.output);
                steps.push(report);
            }
        }
        Ok(BuildReport { steps })
    }

    fn step_names(&self) -> Vec<String> {
        self.recipe.steps.keys().map(|s| s.to_string()).collect()
    }

    fn plan(&self, step: &str) -> Result<Vec<Vec<String>>, BuildError> {
        let waves = self
            .recipe
            .plan(step)
            .map_err(|_| BuildError::UnknownStep {
                step: step.to_owned(),
                steps: self.step_names(),
            })?;
        Ok(waves
            .into_iter()
            .map(|w| w.into_iter().map(|s| s.to_string()).collect())
            .collect())
    }

    fn needed_inputs(&self, waves: &[Vec<String>]) -> Vec<String> {
        let mut names: Vec<String> = waves
            .iter()
            .flatten()
            .flat_map(|s| self.recipe.steps[s.as_str()].mounts.values())
            .filter_map(|m| match &m.source {
                MountSource::Input(i) => Some(i.to_string()),
                MountSource::Step(_) => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    async fn resolve_inputs(&self, waves: &[Vec<String>]) -> Result<(), BuildError> {
        for name in self.needed_inputs(waves) {
            if self.inputs.lock().expect("inputs lock").contains_key(&name) {
                continue;
            }
            self.reporter.input_started(&name);
            let input = &self.recipe.inputs[name.as_str()];
            let refs = &*self.store.refs;
            let resolved = inputs::resolve(&self.fs, refs, &self.recipe_dir, &name, input).await?;
            self.inputs
                .lock()
                .expect("inputs lock")
                .insert(name, resolved);
        }
        Ok(())
    }

    fn mounts(&self, step: &str, outputs: &BTreeMap<String, Digest>) -> Vec<ResolvedMount> {
        let inputs = self.inputs.lock().expect("inputs lock");
        self.recipe.steps[step]
            .mounts
            .iter()
            .map(|(target, m)| ResolvedMount {
                target: target.clone(),
                tree: match &m.source {
                    MountSource::Input(i) => inputs[i.as_str()].tree,
                    MountSource::Step(s) => outputs[s.as_str()],
                },
                writable: m.writable,
            })
            .collect()
    }

    /// Builds one step whose dependencies are in `outputs`.
    async fn step(
        &self,
        name: &str,
        outputs: &BTreeMap<String, Digest>,
        mode: Mode,
    ) -> Result<StepReport, BuildError> {
        let mounts = self.mounts(name, outputs);
        let (fs, m) = (self.fs.clone(), mounts.clone());
        let root = blocking(move || graft::input_root(&fs, &m)).await??;
        let compiled = compile_action(&self.recipe, name, root, &mounts)?;
        for bytes in [&compiled.command_bytes, &compiled.action_bytes] {
            self.fs
                .put_bytes_sync(bytes)
                .map_err(|e| BuildError::store(format!("step `{name}`: storing its action"), e))?;
        }
        let job = Job::new(name, &self.recipe.steps[name], mounts, &compiled);
        let action = compiled.action_digest;
        let cached = match mode {
            Mode::Uncached => None,
            _ => cache::lookup(&self.fs, &*self.store.refs, &action).await?,
        };
        let report = |output, cached, seconds| StepReport {
            name: name.to_owned(),
            action_digest: action,
            output,
            cached,
            seconds,
        };
        match (mode, cached) {
            (Mode::Normal, Some(hit)) => {
                self.reporter.step_cached(name, &hit.output);
                Ok(report(hit.output, true, 0.0))
            }
            (Mode::Check, Some(hit)) => {
                let ran = self.check(&job, &hit).await?;
                Ok(report(ran.output, false, ran.duration.as_secs_f64()))
            }
            (Mode::Check, None) => {
                let first = self.execute(&job).await?;
                self.record(&action, &first).await?;
                let hit = CachedResult {
                    output: first.output,
                    log: first.log,
                };
                let ran = self.check(&job, &hit).await?;
                Ok(report(ran.output, false, ran.duration.as_secs_f64()))
            }
            (_, _) => {
                let ran = self.execute(&job).await?;
                if mode == Mode::Normal {
                    self.record(&action, &ran).await?;
                }
                Ok(report(ran.output, false, ran.duration.as_secs_f64()))
            }
        }
    }

    /// Runs `job` again and fails unless its output equals `expected`'s.
    async fn check(&self, job: &Job, expected: &CachedResult) -> Result<Ran, BuildError> {
        let ran = self.execute(job).await?;
        let fs = self.fs.clone();
        let (a, b) = (expected.output, ran.output);
        let diffs = blocking(move || differences(&fs, &a, &b)).await??;
        if diffs.is_empty() && a == b {
            return Ok(ran);
        }
        Err(BuildError::NotReproducible {
            step: job.name.clone(),
            differences: diffs,
        })
    }

    async fn execute(&self, job: &Job) -> Result<Ran, BuildError> {
        self.reporter.step_started(&job.name);
        let (fs, j, r) = (self.fs.clone(), job.clone(), self.reporter.clone());
        let ran = blocking(move || run::run(&fs, &j, r)).await??;
        let seconds = ran.duration.as_secs_f64();
        self.reporter.step_finished(&job.name, &ran.output, seconds);
        Ok(ran)
    }

    /// Makes the run's blobs durable, then records it in the action cache.
    async fn record(&self, action: &Digest, ran: &Ran) -> Result<(), BuildError> {
        self.store
            .blobs
            .flush()
            .await
            .map_err(|e| BuildError::store("flushing the store", e))?;
        let result = CachedResult {
            output: ran.output,
            log: ran.log,
        };
        cache::record(&*self.store.refs, action, &result, ran.started, ran.ended).await
    }
}
