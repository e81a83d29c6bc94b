//! The trace of a run: the last events, kept small and formatted only
//! when they are shown (a failed invariant, or `--trace`).

use std::collections::VecDeque;
use std::fmt;

use cairn_rollout::{Action, Read, Write};

use crate::scenario::promotion;

/// One traced event.
#[derive(Clone, Debug)]
pub enum Ev {
    /// A statement was promoted.
    Promote(u64),
    /// An agent accepted a statement.
    Accept(u64),
    /// An agent decided.
    Decide(String),
    /// A write reached the store.
    Applied(&'static str, bool),
    /// A rollout record was written.
    Rollout(String),
    /// A swap began.
    SwapStart(&'static str, String),
    /// A swap ended.
    SwapEnd(String),
    /// The agent crashed.
    Crash,
    /// The agent started again.
    Restart,
    /// An operator acted.
    Operator(String),
    /// An invariant failed.
    Violation(String),
}

/// The last events of a run.
#[derive(Debug)]
pub struct Trace {
    last: VecDeque<(i64, Option<u32>, Ev)>,
    keep: usize,
    /// Print every event as it happens.
    pub live: bool,
}

impl Trace {
    /// A trace keeping the last `keep` events.
    pub fn new(keep: usize, live: bool) -> Self {
        Self {
            last: VecDeque::with_capacity(keep),
            keep,
            live,
        }
    }

    /// Records an event at `t` (ms after the promotion) by `agent`.
    pub fn push(&mut self, t: i64, agent: Option<u32>, ev: Ev) {
        if self.live {
            eprintln!("{}", Line(t, agent, &ev));
        }
        if self.last.len() == self.keep {
            self.last.pop_front();
        }
        self.last.push_back((t, agent, ev));
    }

    /// The kept events, one a line.
    pub fn render(&self) -> String {
        self.last
            .iter()
            .map(|(t, a, e)| format!("{}\n", Line(*t, *a, e)))
            .collect()
    }
}

struct Line<'a>(i64, Option<u32>, &'a Ev);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = self
            .1
            .map_or("      ".to_string(), crate::scenario::member_id);
        write!(f, "{:>10.3}s {who} ", self.0 as f64 / 1000.0)?;
        match self.2 {
            Ev::Promote(s) => write!(f, "promote statement {s}"),
            Ev::Accept(s) => write!(f, "accepts statement {s}"),
            Ev::Decide(d) => write!(f, "decides {d}"),
            Ev::Applied(what, ok) => write!(
                f,
                "{what} write {}",
                if *ok { "applied" } else { "conflicted" }
            ),
            Ev::Rollout(r) => write!(f, "rollout record now {r}"),
            Ev::SwapStart(k, r) => write!(f, "starts {k} to {r}"),
            Ev::SwapEnd(o) => write!(f, "swap ends: {o}"),
            Ev::Crash => f.write_str("CRASHES"),
            Ev::Restart => f.write_str("restarts"),
            Ev::Operator(o) => write!(f, "operator: {o}"),
            Ev::Violation(v) => write!(f, "VIOLATION: {v}"),
        }
    }
}

/// What a decision looks like in the trace.
pub(crate) fn describe(reads: &[Read], writes: &[Write], action: &Action) -> String {
    let mut s = String::new();
    for r in reads {
        match r {
            Read::Members => s.push_str("list members; "),
            Read::Records(n) => s.push_str(&format!("read {} records; ", n.len())),
            Read::Fleet { service, set } => s.push_str(&format!("read fleet {service}/{set}; ")),
        }
    }
    for w in writes {
        match w {
            Write::Rollout { record, .. } => s.push_str(&format!(
                "write rollout ({}, wave {}, {} slots); ",
                record.phase,
                record.wave,
                record.slots.len()
            )),
            Write::Member { record, .. } => {
                s.push_str(&format!("write member ({:?}); ", record.state))
            }
        }
    }
    match action {
        Action::Wait {
            until,
            refresh,
            reason,
        } => {
            // On the agent's clock, from the promotion.
            let secs = |t: &cairn_rollout::Time| (t.0 - promotion().0) as f64 / 1000.0;
            let (until, refresh) = (secs(until), secs(refresh));
            s.push_str(&format!(
                "wait to {until:.3}s, read at {refresh:.3}s: {reason}"
            ))
        }
        Action::Fetch { .. } => s.push_str("fetch"),
        Action::Update { .. } => s.push_str("UPDATE"),
        Action::RollBack { .. } => s.push_str("ROLL BACK"),
        Action::RunCheck { gate, .. } => s.push_str(&format!("run check {gate}")),
    }
    s
}
