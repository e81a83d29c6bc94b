//! Gates: what a wave waits on before it starts.
//!
//! A freeze window is decided from `now` alone: no grant is made that
//! could still be swapping when a window begins, nor before it ended on
//! every clock (the skew bound on both sides). A `fleet` gate needs the
//! other set's state, which the steward asks the agent to read. A `check`
//! gate is a command the steward runs before each wave; its result comes
//! back as a local fact, and a failed check is run again after
//! [`crate::Timing::check_retry`]. What is waited on is written into the
//! rollout record (`gates`), so status shows it.
//!
//! The record's plan is anyone's to write who may write the store: a
//! steward runs only the check commands of its **own** plan, never one
//! the record names (that would run a store writer's command on the
//! steward's machine), and holds a wave on the freeze and fleet gates of
//! both plans (a gate dropped from the record still holds).

use std::time::Duration;

use super::{own_plan, Cx};
use crate::decision::{Action, Read};
use crate::plan::Gate;
use crate::plan_wire::rfc3339;
use crate::record::Lease;

/// Where the gates stand for the next wave.
pub(super) enum Gates {
    /// Nothing holds the wave back.
    Open,
    /// Facts to read first.
    Reads(Vec<Read>),
    /// A check to run first.
    Run(Action),
    /// These hold it back, in words.
    Waiting(Vec<String>),
}

/// Checks the gates before more grants: a freeze holds any grant; fleet
/// and check gates are passed once per wave, before its first grant
/// (`new_wave`).
pub(super) fn check(cx: &mut Cx<'_>, new_wave: bool) -> Gates {
    let (now, view, t) = (cx.now, cx.view, cx.timing());
    let own = own_plan::plan(cx).gates.clone();
    let mut gates: Vec<Gate> = cx.rec().strategy.gates.clone();
    gates.retain(|g| !matches!(g, Gate::Check { .. }));
    for g in &own {
        if !matches!(g, Gate::Check { .. }) && !gates.contains(g) {
            gates.push(g.clone());
        }
    }
    // A grant now may be swapping until its lease ends (and the holder's
    // clock may be ahead): it must be over before any window begins.
    let reach = now.plus(Duration::from_secs(cx.rec().lease) + t.margin());
    let mut waiting = Vec::new();
    let mut reads = Vec::new();
    for gate in &gates {
        if let Some(end) = gate.freezes(now, reach, t.max_skew) {
            waiting.push(gate.to_string());
            cx.wake(end);
            continue;
        }
        match gate {
            Gate::Fleet {
                service,
                set,
                release,
            } if new_wave => match view.fleets.get(&format!("{service}/{set}")) {
                None => reads.push(Read::Fleet {
                    service: service.clone(),
                    set: set.clone(),
                }),
                Some(fact) if !fact.satisfies(release.as_deref()) => match &fact.refused {
                    Some(why) => waiting.push(format!("{gate} (not believed: {why})")),
                    None => waiting.push(gate.to_string()),
                },
                Some(_) => {}
            },
            _ => {}
        }
    }
    if !reads.is_empty() {
        return Gates::Reads(reads);
    }
    if !waiting.is_empty() {
        return Gates::Waiting(waiting);
    }
    if !new_wave {
        return Gates::Open;
    }
    checks(cx, &own)
}

/// Runs the check commands of this agent's own plan (`gates`, indexed as
/// there), last, once nothing else holds the wave.
fn checks(cx: &mut Cx<'_>, gates: &[Gate]) -> Gates {
    let (now, t) = (cx.now, cx.timing());
    let (sequence, wave) = (cx.rec().sequence, cx.rec().wave + 1);
    let mut waiting = Vec::new();
    for (i, gate) in gates.iter().enumerate() {
        let Gate::Check { command, timeout } = gate else {
            continue;
        };
        let last = cx
            .view
            .local
            .checks
            .iter()
            .filter(|c| c.sequence == sequence && c.wave == wave && c.gate == i)
            .max_by_key(|c| c.at);
        let again = last.map(|c| c.at.plus(t.check_retry));
        match last {
            Some(c) if c.passed => continue,
            Some(_) if again.is_some_and(|a| now < a) => {
                let at = again.expect("checked");
                waiting.push(format!("{gate} (failed; runs again at {})", rfc3339(at)));
                cx.wake(at);
            }
            _ => {
                // The lease must outlast the check, or another agent would
                // take over while it runs.
                let me = cx.me().to_string();
                cx.edit().steward = Some(Lease {
                    member: me,
                    expires: now.plus(*timeout + t.steward_lease).secs(),
                });
                return Gates::Run(Action::RunCheck {
                    gate: i,
                    wave,
                    command: command.clone(),
                    timeout: *timeout,
                });
            }
        }
    }
    if waiting.is_empty() {
        Gates::Open
    } else {
        Gates::Waiting(waiting)
    }
}
