//! Whole pipelines end to end: the real binary runs `examples/pipeline`
//! (a build, two test steps, a release gated on them) in real sandboxes.
//! `cairn test` caches passes and never failures, shows a failed test's
//! log and report, runs independent steps in parallel up to `--jobs`, and
//! `cairn release` refuses until the required tests passed on the same
//! inputs. The root file system is Debian's `busybox-static` (the tests
//! fail if it is missing, `.ci/run` installs it).
//!
//! By feature: [`results`] (what `cairn test` caches, shows and reads of
//! a report), [`gate`] (what a release requires), [`jobs`] (steps in
//! parallel), [`provenance`] (what a release records of its tests).

#[path = "../support/mod.rs"]
mod support;

mod gate;
mod jobs;
mod provenance;
mod results;

use support::project::Project;

/// `examples/pipeline` copied into a temp dir, its rootfs made, key `ci`.
pub fn example() -> Project {
    let p = Project::example("pipeline");
    p.setup("make-rootfs.sh");
    p.ok(&["key", "generate", "ci"]);
    p
}
