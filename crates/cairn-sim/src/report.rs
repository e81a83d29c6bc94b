//! What a run found, and the figures of a sweep of runs.

use std::fmt::Write as _;
use std::time::Duration;

use cairn_rollout::Phase;
use serde_json::{json, Value};

use crate::scenario::Kind;
use crate::store::Counts;

/// The result of one run.
#[derive(Debug)]
pub struct Outcome {
    /// Its seed.
    pub seed: u64,
    /// Members in the set.
    pub agents: u32,
    /// Its kind.
    pub kind: Kind,
    /// The rollout's final phase.
    pub phase: Option<Phase>,
    /// From the promotion until the rollout ended and every live member
    /// ran its outcome.
    pub duration: Option<Duration>,
    /// Store operations from the promotion until then.
    pub counts: Counts,
    /// The most members unavailable at once.
    pub max_unavailable: u32,
    /// What the plan allows.
    pub allowed: u32,
    /// Members whose agent died mid-swap and stayed down past their lease.
    pub crashed_hosts: u32,
    /// Updates started from a grant read just before a halt was stored.
    pub racing_starts: u32,
    /// Events simulated.
    pub events: u64,
    /// Invariants that failed (empty: none).
    pub violations: Vec<String>,
    /// The last events, when something failed.
    pub trace: String,
}

impl Outcome {
    /// Ref operations per agent (lists counted as their pages).
    pub fn requests_per_agent(&self) -> f64 {
        self.counts.requests() as f64 / f64::from(self.agents)
    }

    /// The command that runs this seed again, with its trace.
    pub fn replay(&self) -> String {
        format!(
            "cargo run -p cairn-sim --release -- --seed {} --agents {} --kind {} --trace",
            self.seed, self.agents, self.kind
        )
    }

    /// A report of a failed run: what failed, how to replay it, its trace.
    pub fn failure(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "seed {} ({} agents, {}) failed: {}",
            self.seed,
            self.agents,
            self.kind,
            self.violations.join("; ")
        );
        let _ = writeln!(s, "replay: {}", self.replay());
        let _ = writeln!(s, "last events:\n{}", self.trace);
        s
    }
}

/// Figures over many runs of one size.
#[derive(Debug, Default)]
pub struct Summary {
    /// Runs.
    pub runs: u32,
    /// Runs with a violation.
    pub failed: u32,
    /// Members per run.
    pub agents: u32,
    requests: Vec<f64>,
    rollout_reads: Vec<f64>,
    rollout_writes: Vec<f64>,
    member_reads: Vec<f64>,
    member_writes: Vec<f64>,
    bytes_read: Vec<f64>,
    seconds: Vec<f64>,
    max_unavailable: u32,
    allowed: u32,
}

impl Summary {
    /// Adds a run.
    pub fn add(&mut self, o: &Outcome) {
        self.runs += 1;
        self.agents = o.agents;
        self.failed += u32::from(!o.violations.is_empty());
        let n = f64::from(o.agents);
        let c = &o.counts;
        self.requests.push(o.requests_per_agent());
        self.rollout_reads.push(c.rollout_reads as f64 / n);
        self.rollout_writes
            .push((c.rollout_writes + c.rollout_conflicts) as f64 / n);
        self.member_reads.push(c.member_reads as f64 / n);
        self.member_writes.push(c.member_writes as f64 / n);
        self.bytes_read.push(c.bytes_read as f64 / n);
        if let Some(d) = o.duration {
            self.seconds.push(d.as_secs_f64());
        }
        self.max_unavailable = self.max_unavailable.max(o.max_unavailable);
        self.allowed = self.allowed.max(o.allowed);
    }

    /// The figures as JSON (medians and maxima).
    pub fn to_json(&self) -> Value {
        let m = |v: &[f64]| json!({"median": round(median(v)), "max": round(max(v))});
        json!({
            "agents": self.agents,
            "runs": self.runs,
            "failed": self.failed,
            "requests_per_agent": m(&self.requests),
            "rollout_reads_per_agent": m(&self.rollout_reads),
            "rollout_writes_per_agent": m(&self.rollout_writes),
            "member_reads_per_agent": m(&self.member_reads),
            "member_writes_per_agent": m(&self.member_writes),
            "bytes_read_per_agent": m(&self.bytes_read),
            "duration_seconds": m(&self.seconds),
            "max_unavailable": self.max_unavailable,
            "allowed_unavailable": self.allowed,
        })
    }

    /// One table row: agents, runs, failed, requests, reads, writes,
    /// member reads, member writes, KB read, duration.
    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {:.1} ({:.1}) | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {:.0} ({:.0}) | {} / {} |",
            self.agents,
            self.runs,
            self.failed,
            median(&self.requests),
            max(&self.requests),
            median(&self.rollout_reads),
            median(&self.rollout_writes),
            median(&self.member_reads),
            median(&self.member_writes),
            median(&self.bytes_read) / 1024.0,
            median(&self.seconds),
            max(&self.seconds),
            self.max_unavailable,
            self.allowed,
        )
    }

    /// The header matching [`Summary::row`].
    pub fn header() -> &'static str {
        "| agents | runs | failed | requests / agent, median (max) | rollout reads | rollout writes | member reads | member writes | KB read / agent | duration s, median (max) | most unavailable / allowed |\n|---|---|---|---|---|---|---|---|---|---|---|"
    }
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
