//! `cairn build [STEP]`: build a step of `cairn.toml` hermetically.
//!
//! The work is `cairn_build::Builder`'s; this module picks the recipe and
//! step, shows progress (a spinner on a terminal) and the steps' log lines
//! as `[step] line` on stderr, and renders the result: the output tree
//! digest, or with `--json` every step's action digest, output, whether it
//! was cached and how long it ran. A failed step shows the tail of its log;
//! a failed `--check` lists each differing file with both digests (and runs
//! `diffoscope` on them when it is installed).
//!
//! With a remote `--store` (a `cairn server`, an S3 bucket) the build runs
//! in the local cache with the remote as its remote cache, as Bazel's
//! `--remote_cache`: a step the cache lacks is looked up in the remote's
//! action cache and its outputs fetched (`"remote": true` in `--json`), and
//! what the build runs is uploaded there, outputs before the entry; pinned
//! inputs come from the remote when the cache lacks them. See
//! `cairn_build::remote`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use cairn_build::compare::Entry;
use cairn_build::{BuildError, BuildOptions, Difference, Reporter};
use cairn_digest::Digest;
use cairn_store::FsStore;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::Workspace;
use crate::cli::{BuildArgs, Global, RecipeLocation};
use crate::output::{emit, stderr_line, Detailed};

#[derive(Serialize)]
struct StepJson {
    step: String,
    action_digest: String,
    output: String,
    cached: bool,
    remote: bool,
    seconds: f64,
}

pub async fn run(global: &Global, args: BuildArgs) -> Result<i32> {
    let ws = Workspace::open(global, super::Access::Create).await?;
    let file = recipe_file(&args.recipe)?;
    let reporter = Arc::new(Live::new());
    let builder = ws.builder(&file)?.with_reporter(reporter.clone());
    let options = BuildOptions {
        check: args.check,
        no_cache: args.no_cache,
    };
    if args.all {
        let all = builder.all_steps();
        return super::test::pipeline(global, &builder, &reporter, &all, args.jobs, options).await;
    }
    let step = match args.step {
        Some(s) => s,
        None => builder.default_step()?,
    };
    let result = builder.build(&step, options).await;
    reporter.bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e) => return failure(&ws.fs, e, global.json),
    };
    let steps: Vec<StepJson> = report
        .steps
        .iter()
        .map(|s| StepJson {
            step: s.name.clone(),
            action_digest: s.action_digest.to_string(),
            output: s.output.to_string(),
            cached: s.cached,
            remote: s.remote,
            seconds: s.seconds,
        })
        .collect();
    emit(global.json, &steps, |s| {
        s.last().map_or(String::new(), |l| l.output.clone())
    });
    Ok(0)
}

/// The recipe file `-C`/`--file` name, or why there is none: the most
/// common first mistake is running cairn outside the project.
pub(crate) fn recipe_file(location: &RecipeLocation) -> Result<PathBuf> {
    let file = location.path();
    if file.exists() {
        return Ok(file);
    }
    if location.file.is_some() {
        bail!("recipe file {} does not exist", file.display());
    }
    let dir = location.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let shown = std::path::absolute(&dir).unwrap_or(dir);
    bail!(
        "no cairn.toml in {}: run cairn in the project's directory, or say where it is with -C DIR (or --file FILE)",
        shown.display()
    )
}

/// Gives the errors that carry more than one line their detail lines (a
/// failed step's log tail, the differing files of `--check`); `main`
/// renders them. With a terminal's text output, `diffoscope` (when
/// installed) shows each differing file pair first.
pub(crate) fn failure(fs: &FsStore, e: BuildError, json: bool) -> Result<i32> {
    let details = match &e {
        BuildError::StepFailed { .. } => failure_details(&e),
        BuildError::NotReproducible { differences, .. } => {
            if !json {
                diffoscope(fs, differences);
            }
            differences
                .iter()
                .map(|d| {
                    format!(
                        "{}: cached {} != rebuilt {}",
                        d.path,
                        show(&d.before),
                        show(&d.after)
                    )
                })
                .collect()
        }
        _ => return Err(e.into()),
    };
    Err(Detailed::new(e.to_string(), details).into())
}

/// The detail lines of a failed step: the tail of its log, then the
/// failures its test report lists. Empty for other errors.
pub(crate) fn failure_details(e: &BuildError) -> Vec<String> {
    let BuildError::StepFailed { tail, failures, .. } = e else {
        return Vec::new();
    };
    let mut lines = vec![format!("last {} lines of the log:", tail.len())];
    lines.extend(tail.iter().map(|line| format!("| {line}")));
    if !failures.is_empty() {
        lines.push("failures in the test report:".into());
        lines.extend(failures.iter().map(|f| format!("- {f}")));
    }
    lines
}

fn show(entry: &Option<Entry>) -> String {
    entry.as_ref().map_or("(absent)".into(), |e| e.to_string())
}

/// Runs `diffoscope` on each pair of differing files, if it is installed.
fn diffoscope(fs: &FsStore, differences: &[Difference]) {
    for d in differences {
        let (Some(Entry::File(a, _)), Some(Entry::File(b, _))) = (&d.before, &d.after) else {
            continue;
        };
        let child = std::process::Command::new("diffoscope")
            .arg("--no-progress")
            .arg(fs.blob_path(a))
            .arg(fs.blob_path(b))
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            return; // not installed
        };
        // The files are a step's: their differences are shown escaped.
        if let Some(mut diff) = child.stdout.take() {
            let mut shown = crate::output::Escaped::new(std::io::stderr().lock());
            let _ = std::io::copy(&mut diff, &mut shown).and_then(|_| shown.finish());
        }
        let _ = child.wait();
    }
}

/// Shows progress on a spinner (terminals only) and log lines on stderr.
pub(crate) struct Live {
    pub(crate) bar: ProgressBar,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: Vec<String>,
    cached: usize,
    finished: usize,
}

impl Live {
    pub(crate) fn new() -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        Self {
            bar,
            state: Mutex::new(State::default()),
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state.lock().expect("state lock");
        f(&mut s);
        let running = if s.running.is_empty() {
            "-".to_string()
        } else {
            s.running.join(", ")
        };
        self.bar.set_message(format!(
            "running: {running} | cached: {} | finished: {}",
            s.cached, s.finished
        ));
    }

    fn line(&self, text: String) {
        if self.bar.is_hidden() {
            stderr_line(&text);
        } else {
            // As `stderr_line` does: no control character reaches the
            // terminal (a step's lines come escaped already).
            self.bar.println(cairn_escape::lines(text.as_bytes()));
        }
    }
}

impl Reporter for Live {
    fn input_started(&self, input: &str) {
        tracing::info!("resolving input `{input}`");
        self.bar.set_message(format!("resolving input {input}"));
    }

    fn step_cached(&self, step: &str, _output: &Digest) {
        self.update(|s| s.cached += 1);
        self.line(format!("[{step}] cached"));
    }

    fn step_fetched(&self, step: &str, _output: &Digest) {
        self.update(|s| s.cached += 1);
        self.line(format!("[{step}] cached (remote)"));
    }

    fn step_started(&self, step: &str) {
        tracing::info!("building step `{step}` in the sandbox");
        self.update(|s| s.running.push(step.to_owned()));
    }

    fn log_line(&self, step: &str, line: &str) {
        self.line(format!("[{step}] {line}"));
    }

    fn step_failed(&self, step: &str) {
        self.update(|s| s.running.retain(|r| r != step));
        self.line(format!("[{step}] failed"));
    }

    fn step_finished(&self, step: &str, _output: &Digest, seconds: f64) {
        self.update(|s| {
            s.running.retain(|r| r != step);
            s.finished += 1;
        });
        self.line(format!("[{step}] finished in {seconds:.1}s"));
    }

    fn warning(&self, step: &str, message: &str) {
        self.line(format!("warning: [{step}] {message}"));
    }
}
