//! [`Builder`]: a recipe, a store, and the order in which steps run.
//!
//! A build plans the requested step into waves ([`Recipe::plan`]),
//! resolves every input those steps mount (once per builder, concurrently), then runs
//! wave after wave; the steps of one wave run concurrently (each sandbox on
//! its own blocking thread; a step alone in its wave runs on the calling
//! thread, see [`crate::offload`]). For each step it grafts the mounts into an
//! input root, compiles the action, asks the action cache, and runs the
//! step only on a miss (or always, under `check` / `no_cache`). With a
//! remote cache attached ([`Builder::with_remote`]) a local miss is looked
//! up remotely before running, and every result is published there
//! ([`crate::remote`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cairn_digest::Digest;
use cairn_recipe::{compile_action, MountSource, Recipe, ResolvedMount};
use cairn_snapshot::Unconfirmed;
use cairn_store::{FsStore, Store};
use futures::future::try_join_all;
use tokio::sync::Semaphore;

use crate::cache::{self, CachedResult};
use crate::compare::differences;
use crate::error::BuildError;
use crate::inputs::{self, ResolvedInput};
use crate::offload::{blocking, Offload};
use crate::remote::{Published, Remote};
use crate::run::{self, Job, Ran};
use crate::{graft, BuildOptions, BuildReport, NoReporter, Reporter, StepReport};

/// How one step treats the action cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Use a complete cached result; else run and record.
    Normal,
    /// Use a complete cached result; else fail with
    /// [`BuildError::TestNotPassed`] (nothing runs).
    CachedOnly,
    /// Run even if cached, and compare with the cached output.
    Check,
    /// Run; neither read nor write the cache.
    Uncached,
}

impl Mode {
    /// The mode `options` ask for.
    pub(crate) fn of(options: BuildOptions) -> Self {
        match (options.check, options.no_cache) {
            (true, _) => Mode::Check,
            (false, true) => Mode::Uncached,
            (false, false) => Mode::Normal,
        }
    }
}

/// What may run beside a step of a build.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Beside<'a> {
    /// Nothing: the step is alone in its wave, and its blocking work runs
    /// on the calling thread ([`Offload::Here`]).
    Nothing,
    /// The other steps of its wave, each sandbox on a thread of its own.
    Wave,
    /// Other steps, as many sandboxes at once as `slots` has permits
    /// (`--jobs`): a step waits for one, and gives it back as soon as its
    /// sandbox has ended.
    Slots(&'a Arc<Semaphore>),
}

impl Beside<'_> {
    fn offload(self) -> Offload {
        Offload::alone(matches!(self, Beside::Nothing))
    }
}

/// Which action cache answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Local,
    Remote,
}

/// Builds the steps of one recipe into one store.
pub struct Builder {
    store: Store,
    fs: Arc<FsStore>,
    recipe: Arc<Recipe>,
    /// Where path inputs are found; `None` for a recipe read back from a
    /// release, whose inputs are all pinned trees.
    recipe_dir: Option<PathBuf>,
    pub(crate) reporter: Arc<dyn Reporter>,
    remote: Option<Remote>,
    registry: cairn_oci::RegistryConfig,
    inputs: Mutex<HashMap<String, ResolvedInput>>,
    /// Snapshot path inputs trusting the stat cache alone (the default):
    /// what an action-cache hit needs. Off for a release.
    trust_inputs: bool,
    /// Path inputs snapshotted that way, kept as walked: a step mounting
    /// one confirms it (checks its file blobs) before it runs.
    unverified: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<Unconfirmed>>>>,
    /// Sandboxes whose last processes are still exiting, each on a
    /// blocking thread: waited for before a build returns, so that none
    /// outlives the command (a killed teardown would leave its scratch
    /// mounted until the next sandbox sweeps it).
    exiting: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Builder {
    /// A builder for `<recipe_dir>/cairn.toml`.
    pub fn new(store: Store, recipe_dir: &Path) -> Result<Self, BuildError> {
        Self::from_file(store, &recipe_dir.join("cairn.toml"))
    }

    /// A builder for the recipe in `file`; path inputs are relative to its
    /// directory.
    pub fn from_file(store: Store, file: &Path) -> Result<Self, BuildError> {
        let text = std::fs::read_to_string(file).map_err(|source| BuildError::ReadRecipe {
            path: file.to_owned(),
            source,
        })?;
        let recipe = Recipe::parse(&file.display().to_string(), &text)?;
        let dir = file.parent().filter(|p| !p.as_os_str().is_empty());
        Self::with_recipe(
            store,
            recipe,
            Some(dir.unwrap_or(Path::new(".")).to_owned()),
        )
    }

    /// A builder for a recipe as a release recorded it (`text`, named
    /// `name` in messages), every input replaced by the tree the release
    /// recorded for it (`trees`, by input name): what an independent
    /// rebuild runs, needing no checkout of the source. An input the
    /// release recorded no tree for cannot be resolved (no directory is
    /// snapshotted and nothing is fetched).
    pub fn from_recorded(
        store: Store,
        name: &str,
        text: &str,
        trees: &BTreeMap<String, Digest>,
    ) -> Result<Self, BuildError> {
        let mut recipe = Recipe::parse(name, text)?;
        for (input, source) in recipe.inputs.iter_mut() {
            if let Some(tree) = trees.get(input.as_str()) {
                *source = cairn_recipe::Input::Tree((*tree).into());
            }
        }
        Self::with_recipe(store, recipe, None)
    }

    fn with_recipe(
        store: Store,
        recipe: Recipe,
        recipe_dir: Option<PathBuf>,
    ) -> Result<Self, BuildError> {
        let fs = store.local.clone().ok_or(BuildError::NotLocal)?;
        Ok(Self {
            store,
            fs,
            recipe: Arc::new(recipe),
            recipe_dir,
            reporter: Arc::new(NoReporter),
            remote: None,
            registry: cairn_oci::RegistryConfig::default(),
            inputs: Mutex::new(HashMap::new()),
            trust_inputs: true,
            unverified: Mutex::new(BTreeMap::new()),
            exiting: Mutex::new(Vec::new()),
        })
    }

    /// Snapshots path inputs checking every stat cache hit's blob in the
    /// store, as `cairn store add` does, even when every step is cached:
    /// for a release, which records the input trees and must hold them
    /// whole. Without this a fully cached build looks at the source files
    /// only, and a step that runs checks the inputs it mounts first.
    pub fn verifying_inputs(mut self) -> Self {
        self.trust_inputs = false;
        self
    }

    /// Reports progress and log lines to `reporter`.
    pub fn with_reporter(mut self, reporter: Arc<dyn Reporter>) -> Self {
        self.reporter = reporter;
        self
    }

    /// How `oci` inputs reach registries (credentials, plain-HTTP hosts);
    /// by default anonymously, over HTTPS except for loopback registries.
    pub fn with_registry(mut self, registry: cairn_oci::RegistryConfig) -> Self {
        self.registry = registry;
        self
    }

    /// Backs the local store with `remote`'s action cache and blobs: a
    /// local miss is looked up there (and its outputs fetched), results are
    /// published there, and pinned inputs the local store lacks come from
    /// there. See [`crate::remote`].
    pub fn with_remote(mut self, remote: Store) -> Self {
        self.remote = Some(Remote::new(remote));
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
        let mode = Mode::of(options);
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

    pub(crate) async fn build_with(
        &self,
        step: &str,
        mode: impl Fn(&str) -> Mode,
    ) -> Result<BuildReport, BuildError> {
        let built = self.run_waves(step, mode).await;
        self.settle().await;
        built
    }

    async fn run_waves(
        &self,
        step: &str,
        mode: impl Fn(&str) -> Mode,
    ) -> Result<BuildReport, BuildError> {
        let waves = self.plan(step)?;
        self.resolve_inputs(&waves).await?;
        let mut outputs = BTreeMap::new();
        let mut steps = Vec::new();
        for wave in &waves {
            let beside = match wave.len() {
                1 => Beside::Nothing,
                _ => Beside::Wave,
            };
            let runs = wave.iter().map(|s| self.step(s, &outputs, mode(s), beside));
            for report in try_join_all(runs).await? {
                outputs.insert(report.name.clone(), report.output);
                steps.push(report);
            }
        }
        Ok(BuildReport { steps })
    }

    /// Waits for the sandboxes still exiting.
    pub(crate) async fn settle(&self) {
        let exiting = std::mem::take(&mut *self.exiting.lock().expect("exiting lock"));
        for teardown in exiting {
            let _ = teardown.await;
        }
    }

    pub(crate) fn step_names(&self) -> Vec<String> {
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

    /// Resolves the inputs not resolved yet, concurrently (snapshots and
    /// fetches of different inputs overlap).
    pub(crate) async fn resolve_inputs(&self, waves: &[Vec<String>]) -> Result<(), BuildError> {
        let missing: Vec<String> = {
            let memo = self.inputs.lock().expect("inputs lock");
            let needed = self.needed_inputs(waves).into_iter();
            needed.filter(|n| !memo.contains_key(n)).collect()
        };
        let offload = Offload::alone(missing.len() == 1);
        let resolving = missing.iter().map(|name| self.resolve_input(name, offload));
        for resolved in try_join_all(resolving).await? {
            let mut memo = self.inputs.lock().expect("inputs lock");
            memo.insert(resolved.name.clone(), resolved);
        }
        Ok(())
    }

    async fn resolve_input(
        &self,
        name: &str,
        offload: Offload,
    ) -> Result<ResolvedInput, BuildError> {
        self.reporter.input_started(name);
        let input = &self.recipe.inputs[name];
        if let Some(remote) = &self.remote {
            remote
                .pull_input(&self.store, &self.fs, name, input)
                .await?;
        }
        let refs = &*self.store.refs;
        let Some(dir) = &self.recipe_dir else {
            // A recipe read back from a release: only pinned trees. A path,
            // a fetch or an image here was not recorded by the release, and
            // neither a directory nor the network is consulted for it.
            if !matches!(input, cairn_recipe::Input::Tree(_)) {
                return Err(BuildError::BadInput {
                    input: name.to_owned(),
                    reason: "the release records no tree for it".into(),
                });
            }
            return inputs::resolve(&self.fs, refs, Path::new("/"), name, input).await;
        };
        if let cairn_recipe::Input::Oci { image, digest } = input {
            let fs = &self.fs;
            return crate::image::resolve(fs, refs, dir, name, image, *digest, &self.registry)
                .await;
        }
        if let cairn_recipe::Input::Path {
            path,
            exclude,
            gitignore,
        } = input
        {
            if self.trust_inputs {
                let (resolved, unconfirmed) = inputs::resolve_unconfirmed(
                    &self.fs, dir, name, path, exclude, *gitignore, offload,
                )
                .await?;
                let mut unverified = self.unverified.lock().expect("unverified lock");
                unverified.insert(
                    name.to_owned(),
                    Arc::new(tokio::sync::Mutex::new(unconfirmed)),
                );
                return Ok(resolved);
            }
        }
        inputs::resolve(&self.fs, refs, dir, name, input).await
    }

    /// Confirms the path inputs `step` mounts that were taken on the stat
    /// cache alone, before the step runs: their file blobs are checked,
    /// and one the store lost or that changed in place is stored again
    /// from its file. A source file that changed since the first snapshot
    /// fails the build (its action key no longer says what runs).
    async fn verify_inputs(&self, step: &str, offload: Offload) -> Result<(), BuildError> {
        let pending: Vec<(String, Arc<tokio::sync::Mutex<Unconfirmed>>)> = {
            let unverified = self.unverified.lock().expect("unverified lock");
            let names: BTreeSet<&str> = self.recipe.steps[step]
                .mounts
                .values()
                .filter_map(|m| match &m.source {
                    MountSource::Input(i) => Some(i.as_str()),
                    _ => None,
                })
                .collect();
            names
                .into_iter()
                .filter_map(|n| unverified.get(n).map(|u| (n.to_owned(), u.clone())))
                .collect()
        };
        for (name, unconfirmed) in pending {
            let checked = inputs::confirm(&self.fs, &name, unconfirmed, offload).await?;
            let first = self.inputs.lock().expect("inputs lock")[name.as_str()].tree;
            if checked != first {
                return Err(BuildError::BadInput {
                    input: name,
                    reason: format!(
                        "it changed while the build ran (snapshot {first}, now {checked}): build again"
                    ),
                });
            }
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
    /// Builds step `name` (or finds it in the cache). With `slots`, its
    /// sandbox runs only while it holds one of them (see
    /// [`Builder::execute`]).
    pub(crate) async fn step(
        &self,
        name: &str,
        outputs: &BTreeMap<String, Digest>,
        mode: Mode,
        beside: Beside<'_>,
    ) -> Result<StepReport, BuildError> {
        self.supported(name)?;
        let mounts = self.mounts(name, outputs);
        let (fs, m) = (self.fs.clone(), mounts.clone());
        let offload = beside.offload();
        let root = offload.run(move || graft::input_root(&fs, &m)).await??;
        let compiled = compile_action(&self.recipe, name, root, &mounts)?;
        for bytes in [&compiled.command_bytes, &compiled.action_bytes] {
            self.fs
                .put_bytes_sync(bytes)
                .map_err(|e| BuildError::store(format!("step `{name}`: storing its action"), e))?;
        }
        let job = Job::new(name, &self.recipe.steps[name], mounts, &compiled);
        let action = compiled.action_digest;
        let found = match mode {
            Mode::Uncached => None,
            _ => self.lookup(&action).await?,
        };
        let report = |output, origin: Option<Origin>, seconds| StepReport {
            name: name.to_owned(),
            action_digest: action,
            output,
            cached: origin.is_some(),
            remote: origin == Some(Origin::Remote),
            seconds,
        };
        match (mode, found) {
            (Mode::CachedOnly, None) => Err(BuildError::TestNotPassed {
                step: name.to_owned(),
            }),
            (Mode::Normal | Mode::CachedOnly, Some((hit, origin))) => {
                if origin == Origin::Remote {
                    self.reporter.step_fetched(name, &hit.output);
                } else {
                    self.reporter.step_cached(name, &hit.output);
                    // A result built before the remote was attached.
                    self.publish(name, &action, &hit.output).await;
                }
                Ok(report(hit.output, Some(origin), 0.0))
            }
            (Mode::Check, Some((hit, _))) => {
                self.verify_inputs(name, offload).await?;
                let ran = self.check(&job, &hit, beside).await?;
                Ok(report(ran.output, None, ran.duration.as_secs_f64()))
            }
            (Mode::Check, None) => {
                self.verify_inputs(name, offload).await?;
                let first = self.execute(&job, beside).await?;
                self.record(&action, &first).await?;
                self.publish(name, &action, &first.output).await;
                let hit = CachedResult {
                    output: first.output,
                    log: first.log,
                };
                let ran = self.check(&job, &hit, beside).await?;
                Ok(report(ran.output, None, ran.duration.as_secs_f64()))
            }
            (_, _) => {
                self.verify_inputs(name, offload).await?;
                let ran = self.execute(&job, beside).await?;
                if mode == Mode::Normal {
                    self.record(&action, &ran).await?;
                    self.publish(name, &action, &ran.output).await;
                }
                Ok(report(ran.output, None, ran.duration.as_secs_f64()))
            }
        }
    }

    /// Refuses a step for another platform that cannot be emulated as
    /// written: it needs an `emulator` input (never the host's binfmt
    /// configuration), and its programs named by absolute path (QEMU
    /// user mode does not search `PATH`).
    fn supported(&self, name: &str) -> Result<(), BuildError> {
        let step = &self.recipe.steps[name];
        let Some(platform) = crate::platform::foreign(step) else {
            return Ok(());
        };
        if !step.mounts.contains_key(cairn_recipe::EMULATOR_MOUNT) {
            return Err(BuildError::NoEmulator {
                step: name.to_owned(),
                platform: platform.as_str().to_owned(),
                emulator: crate::platform::emulator_file(platform),
            });
        }
        let programs = std::iter::once(&step.run).chain(step.services.values().map(|s| &s.run));
        if let Some(argv) = programs.into_iter().find(|argv| !argv[0].starts_with('/')) {
            return Err(BuildError::Unsupported {
                step: name.to_owned(),
                what: format!(
                    "`{}` without an absolute path on platform {} (QEMU user mode does not search PATH)",
                    argv[0],
                    platform.as_str()
                ),
            });
        }
        Ok(())
    }

    /// The complete cached result of `action`: the local action cache's,
    /// else the remote's (fetched into the local store).
    async fn lookup(&self, action: &Digest) -> Result<Option<(CachedResult, Origin)>, BuildError> {
        if let Some(hit) = cache::lookup(&self.fs, &*self.store.refs, action).await? {
            return Ok(Some((hit, Origin::Local)));
        }
        let Some(remote) = &self.remote else {
            return Ok(None);
        };
        let fetched = remote.fetch(&self.store, &self.fs, action).await?;
        Ok(fetched.map(|hit| (hit, Origin::Remote)))
    }

    /// Publishes the local entry of `action` to the remote cache, if one is
    /// attached. Best effort: a failure, or a remote entry with another
    /// output than `ours`, is a warning and the build goes on.
    async fn publish(&self, step: &str, action: &Digest, ours: &Digest) {
        let Some(remote) = &self.remote else {
            return;
        };
        match remote.publish(&self.store, action).await {
            Ok(Some(Published::Differs { theirs })) => self.reporter.warning(
                step,
                &format!(
                    "the remote action cache has output {theirs} for action {action}, this build made {ours}; the step may not be reproducible (the remote entry is kept, the local one too)"
                ),
            ),
            Ok(_) => {}
            Err(e) => self
                .reporter
                .warning(step, &format!("not published to the remote cache: {e}")),
        }
    }

    /// Runs `job` again and fails unless its output equals `expected`'s.
    async fn check(
        &self,
        job: &Job,
        expected: &CachedResult,
        beside: Beside<'_>,
    ) -> Result<Ran, BuildError> {
        let ran = self.execute(job, beside).await?;
        let fs = self.fs.clone();
        let (a, b) = (expected.output, ran.output);
        let diffs = beside
            .offload()
            .run(move || differences(&fs, &a, &b))
            .await??;
        if diffs.is_empty() && a == b {
            return Ok(ran);
        }
        Err(BuildError::NotReproducible {
            step: job.name.clone(),
            differences: diffs,
        })
    }

    /// Runs `job`'s sandbox: on a thread of its own, or on this one when
    /// nothing runs beside it. With slots, it first waits for one.
    async fn execute(&self, job: &Job, beside: Beside<'_>) -> Result<Ran, BuildError> {
        let slot =
            match beside {
                Beside::Slots(s) => Some(s.clone().acquire_owned().await.map_err(|e| {
                    BuildError::Task(format!("step `{}`: no job slot: {e}", job.name))
                })?),
                _ => None,
            };
        self.reporter.step_started(&job.name);
        let (fs, j, r) = (self.fs.clone(), job.clone(), self.reporter.clone());
        let offload = beside.offload();
        let (ran, sandbox) = offload
            .run(move || run::run(&fs, &j, r, move || drop(slot)))
            .await??;
        let seconds = ran.duration.as_secs_f64();
        self.reporter.step_finished(&job.name, &ran.output, seconds);
        // The sandbox's last processes finish exiting meanwhile. Alone, the
        // step waits for them now: they have had the time its output took
        // to store. Beside others, they finish on an idle blocking thread.
        match offload {
            Offload::Here => drop(sandbox),
            Offload::Pool => {
                let exiting = tokio::task::spawn_blocking(move || drop(sandbox));
                self.exiting.lock().expect("exiting lock").push(exiting);
            }
        }
        Ok(ran)
    }

    /// Makes the run's blobs durable, then records it in the action cache.
    /// On a blocking thread: the flush is a `syncfs`, which waits for every
    /// writer's dirty data on the file system, and the entry is written
    /// with `fsync`s; on the pipeline's task they would hold back every
    /// other step's start and end.
    async fn record(&self, action: &Digest, ran: &Ran) -> Result<(), BuildError> {
        let (blobs, refs) = (self.store.blobs.clone(), self.store.refs.clone());
        let (action, ran) = (*action, *ran);
        let runtime = tokio::runtime::Handle::current();
        blocking(move || {
            runtime.block_on(async move {
                blobs
                    .flush()
                    .await
                    .map_err(|e| BuildError::store("flushing the store", e))?;
                let result = CachedResult {
                    output: ran.output,
                    log: ran.log,
                };
                cache::record(&*refs, &action, &result, ran.started, ran.ended).await
            })
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use cairn_tree::{encode_directory, DirectoryBuilder};

    use super::*;

    const RECIPE: &str = r#"
[service]
name = "hello"

[inputs.src]
path = "src"

[inputs.vendor]
url = "http://127.0.0.1:9/vendor.tar"
digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

[steps.build]
mounts = { "/src" = "src", "/vendor" = "vendor" }
run = ["/bin/true"]
"#;

    /// A recipe read back from a release uses the recorded trees, and
    /// neither snapshots a directory nor fetches for an input it lacks.
    #[tokio::test]
    async fn a_recorded_recipe_uses_only_recorded_trees() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::local(FsStore::open(tmp.path().join("store")).unwrap());
        let fs = store.local.clone().unwrap();
        let file = fs.put_bytes_sync(b"recorded\n").unwrap();
        let mut b = DirectoryBuilder::new();
        b.file("a.txt", file, false);
        let tree = fs
            .put_bytes_sync(&encode_directory(&b.build().unwrap()))
            .unwrap();
        // A directory named like the path input, which must not be read.
        std::fs::create_dir_all(tmp.path().join("src")).unwrap();

        let both = BTreeMap::from([("src".to_string(), tree), ("vendor".to_string(), tree)]);
        let builder = Builder::from_recorded(store.clone(), "recipe", RECIPE, &both).unwrap();
        let inputs = builder.inputs("build").await.unwrap();
        assert!(inputs.iter().all(|i| i.tree == tree && i.fetched.is_none()));

        let only_src = BTreeMap::from([("src".to_string(), tree)]);
        let builder = Builder::from_recorded(store, "recipe", RECIPE, &only_src).unwrap();
        let err = builder.inputs("build").await.unwrap_err();
        assert!(
            matches!(&err, BuildError::BadInput { input, .. } if input == "vendor"),
            "{err}"
        );
    }
}
