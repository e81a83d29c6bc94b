//! The simulated world: a virtual clock, a queue of events ordered by
//! time (ties broken by the order they were made), the store, the agents,
//! the channel and an operator. Nothing in it reads a real clock or uses
//! real randomness: a run is a function of its seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use cairn_digest::Digest;
use cairn_rollout::{
    Accepted, Health, Local, MemberRecord, Phase, Plan, RolloutRecord, Time, Timing, Version,
};

use crate::agent::Agent;
use crate::check::Checker;
use crate::report::Outcome;
use crate::rng::Rng;
use crate::scenario::{member_id, promotion, Kind, Scenario};
use crate::store::{Counts, Store, Value, ROLLOUT};
use crate::trace::{Ev, Trace};

/// A promoted channel statement.
#[derive(Clone, Debug)]
pub struct Statement {
    /// Its sequence number.
    pub sequence: u64,
    /// The release it names.
    pub release: Digest,
    /// The release's plan.
    pub plan: Plan,
}

/// What a store request gets back.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Records read.
    Read(Box<Reads>),
    /// A write stored, at this version.
    Written(Version),
    /// A write found another version.
    Conflict,
    /// No answer (store down, request or reply lost).
    Failed,
}

/// The results of a batch of reads.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    pub(crate) rollout: Option<Option<(Version, Value)>>,
    pub(crate) own: Option<Option<(Version, Value)>>,
    pub(crate) members: Option<Arc<Vec<String>>>,
    pub(crate) peers: Vec<(String, Option<MemberRecord>)>,
    pub(crate) fleets: Vec<(String, cairn_rollout::FleetFact)>,
}

/// Something that happens at a time.
#[derive(Debug)]
pub(crate) enum Event {
    /// An agent's timer.
    Wake { a: usize, epoch: u32, token: u64 },
    /// A store reply reaches an agent.
    Reply {
        a: usize,
        epoch: u32,
        req: u64,
        reply: Reply,
    },
    /// A write reaches the store.
    Apply {
        a: usize,
        epoch: u32,
        req: u64,
        write: crate::agent::Sent,
        reply_at: Option<i64>,
    },
    /// A fetch ends.
    Fetched {
        a: usize,
        epoch: u32,
        release: Digest,
    },
    /// A swap ends.
    Swapped { a: usize, epoch: u32 },
    /// A gate check ends.
    Checked {
        a: usize,
        epoch: u32,
        gate: usize,
        wave: u32,
        sequence: u64,
        passed: bool,
    },
    /// An agent's process dies.
    Crash(usize),
    /// An agent's process starts (again).
    Start(usize),
    /// An agent learns of a statement.
    Accept { a: usize, statement: usize },
    /// A statement is promoted.
    Promote(usize),
    /// The operator looks at the rollout.
    Operator,
    /// Convergence is checked.
    Probe,
}

struct Queued {
    t: i64,
    seq: u64,
    ev: Event,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.t, self.seq).cmp(&(o.t, o.seq))
    }
}

/// Give up on a run that has not converged this long after the promotion.
const HORIZON: Duration = Duration::from_secs(6 * 3600);

/// A whole simulated run.
pub struct World {
    pub(crate) sc: Scenario,
    pub(crate) rng: Rng,
    pub(crate) t: i64,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    pub(crate) store: Store,
    pub(crate) agents: Vec<Agent>,
    pub(crate) statements: Vec<Statement>,
    pub(crate) check: Checker,
    pub(crate) trace: Trace,
    pub(crate) next_req: u64,
    pub(crate) check_failures_left: u32,
    pub(crate) timing: Timing,
    pub(crate) events: u64,
    pub(crate) at_promotion: Counts,
    pub(crate) converged: Option<(i64, Counts)>,
    pub(crate) operator_done: u32,
}

impl World {
    /// A world for `sc`; `live` prints the trace as it goes.
    pub fn new(sc: Scenario, live: bool) -> Self {
        let mut rng = Rng::new(sc.seed).fork(2);
        let timing = Timing {
            max_skew: sc.faults.max_skew.max(Duration::from_millis(1)),
            swap_budget: sc.deadline + Duration::from_secs(10),
            ..Timing::default()
        };
        let baseline = release(0);
        let agents = (0..sc.agents)
            .map(|i| {
                let mut a = Agent::new(member_id(i), timing.clone());
                a.view.local = Local {
                    running: Some(baseline),
                    version: Some("1".into()),
                    sequence: Some(1),
                    generation: Some(1),
                    health: Health::Healthy,
                    fetched: vec![baseline],
                    ..Local::default()
                };
                let first = statement(0, &sc);
                a.view.accepted = Some(Accepted {
                    plan: sc.own_plan(i as usize, &first.plan),
                    ..accepted(&first, Time(0))
                });
                a.flaky =
                    u32::from(sc.kind == Kind::Flaky && rng.chance(3.0 / f64::from(sc.agents)));
                a
            })
            .collect();
        let mut check = Checker::default();
        check.accepted.insert(baseline);
        check.freezes = sc
            .plan
            .gates
            .iter()
            .filter_map(|g| match g {
                cairn_rollout::Gate::Freeze { from, until } => Some((from.0, until.0)),
                _ => None,
            })
            .collect();
        let mut w = Self {
            check_failures_left: sc.check_failures,
            sc,
            rng,
            t: promotion().0 - 120_000,
            seq: 0,
            queue: BinaryHeap::new(),
            store: Store::default(),
            agents,
            statements: Vec::new(),
            check,
            trace: Trace::new(400, live),
            next_req: 0,
            timing,
            events: 0,
            at_promotion: Counts::default(),
            converged: None,
            operator_done: 0,
        };
        w.statements.push(statement(0, &w.sc));
        w.seed_done_rollout();
        w.schedule_starts();
        w
    }

    /// The set's previous rollout (of the baseline), finished.
    fn seed_done_rollout(&mut self) {
        let st = &self.statements[0];
        let record = RolloutRecord {
            target: st.release,
            sequence: st.sequence,
            statement: Some(signed(st.sequence)),
            version: Some("1".into()),
            strategy: st.plan.clone(),
            phase: Phase::Done,
            wave: 0,
            members: self.sc.agents,
            capacity: st.plan.capacity(self.sc.agents),
            lease: self.timing.slot_lease().as_secs(),
            cursor: None,
            rollback_cursor: None,
            slots: Vec::new(),
            canaries: Vec::new(),
            done: self.sc.agents,
            away: 0,
            rolled_back: 0,
            failures: Vec::new(),
            halted: None,
            gates: Vec::new(),
            steward: None,
            bake_until: None,
            resume_to: None,
            waves: Vec::new(),
            created: Time(self.t).secs(),
            updated: Time(self.t).secs(),
        };
        let value = Value::Rollout(Arc::new(record));
        self.store
            .compare_and_swap(ROLLOUT, None, value)
            .expect("a fresh store");
    }

    fn schedule_starts(&mut self) {
        let n = self.agents.len();
        let p0 = promotion().0;
        for a in 0..n {
            let late = self.rng.chance(self.sc.faults.late_joiners);
            let at = if late {
                p0 + self.rng.range(1_000, 120_000)
            } else {
                self.t + self.rng.range(0, 60_000)
            };
            self.at(at, Event::Start(a));
        }
        self.at(p0, Event::Promote(1));
        if self.sc.kind == Kind::Newer {
            let at = p0 + self.rng.range(20_000, 200_000);
            self.at(at, Event::Promote(2));
        }
        if matches!(self.sc.kind, Kind::Flaky | Kind::Operator) {
            self.at(p0 + 30_000, Event::Operator);
        }
        self.at(p0, Event::Probe);
    }

    /// Schedules `ev` at true time `t`.
    pub(crate) fn at(&mut self, t: i64, ev: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            t: t.max(self.t),
            seq: self.seq,
            ev,
        }));
    }

    /// Milliseconds since the promotion, for the trace.
    pub(crate) fn since_promotion(&self) -> i64 {
        self.t - promotion().0
    }

    pub(crate) fn note(&mut self, agent: Option<usize>, ev: Ev) {
        let t = self.since_promotion();
        self.trace.push(t, agent.map(|a| a as u32), ev);
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> Outcome {
        while let Some(Reverse(q)) = self.queue.pop() {
            self.t = q.t;
            self.events += 1;
            let violations = self.check.violations.len();
            self.dispatch(q.ev);
            if self.check.violations.len() > violations {
                let v = self.check.violations[violations].clone();
                self.note(None, Ev::Violation(v));
                break;
            }
            if self.finished() {
                break;
            }
            if self.t > promotion().plus(HORIZON).0 {
                self.check
                    .fail("the rollout did not converge in six simulated hours".into());
                break;
            }
        }
        self.outcome()
    }

    fn dispatch(&mut self, ev: Event) {
        match ev {
            Event::Wake { a, epoch, token } => {
                let ag = &self.agents[a];
                if ag.alive && ag.epoch == epoch && ag.timer == token && ag.idle {
                    // A heartbeat before the record is due to be read
                    // again decides on the record already read.
                    if ag.own_known && self.t + ag.skew < ag.refresh {
                        self.heartbeat(a);
                    } else {
                        self.round(a);
                    }
                }
            }
            Event::Reply {
                a,
                epoch,
                req,
                reply,
            } => self.on_reply(a, epoch, req, reply),
            Event::Apply {
                a,
                epoch,
                req,
                write,
                reply_at,
            } => self.apply(a, epoch, req, write, reply_at),
            Event::Fetched { a, epoch, release } => self.fetched(a, epoch, release),
            Event::Swapped { a, epoch } => self.swapped(a, epoch),
            Event::Checked {
                a,
                epoch,
                gate,
                wave,
                sequence,
                passed,
            } => self.checked(a, epoch, gate, wave, sequence, passed),
            Event::Crash(a) => self.crash(a),
            Event::Start(a) => self.start(a),
            Event::Accept { a, statement } => self.accept(a, statement),
            Event::Promote(i) => self.promote(i),
            Event::Operator => self.operator(),
            Event::Probe => self.probe(),
        }
    }

    fn promote(&mut self, i: usize) {
        let st = statement(i, &self.sc);
        self.check.accepted.insert(st.release);
        let allowed = st.plan.capacity(self.sc.agents);
        self.check.allowed = self.check.allowed.max(allowed);
        self.note(None, Ev::Promote(st.sequence));
        self.statements.push(st);
        if i == 1 {
            self.at_promotion = self.store.counts.clone();
        }
        let s = self.statements.len() - 1;
        for a in 0..self.agents.len() {
            let ag = &mut self.agents[a];
            ag.before = ag.view.local.running;
            let delay = self.rng.range(0, 3000);
            self.at(self.t + delay, Event::Accept { a, statement: s });
        }
    }

    fn accept(&mut self, a: usize, s: usize) {
        let st = self.statements[s].clone();
        let ag = &mut self.agents[a];
        if !ag.alive
            || ag
                .view
                .accepted
                .as_ref()
                .is_some_and(|x| x.sequence >= st.sequence)
        {
            return;
        }
        let now = Time(self.t + ag.skew);
        let plan = self.sc.own_plan(a, &st.plan);
        ag.view.accepted = Some(Accepted {
            plan,
            ..accepted(&st, now)
        });
        self.note(Some(a), Ev::Accept(st.sequence));
        if self.agents[a].idle {
            self.round(a);
        }
    }
}

/// The simulation's stand-in for a signed statement of `sequence`.
fn signed(sequence: u64) -> String {
    format!("signed statement {sequence}")
}

/// The release and sequence a statement carried by a rollout record names,
/// if it is one the scenario's key signed (what a real agent checks
/// against its trusted keys).
pub(crate) fn verify(statement: &str) -> Option<cairn_rollout::Attempt> {
    let sequence: u64 = statement.strip_prefix("signed statement ")?.parse().ok()?;
    let i = usize::try_from(sequence.checked_sub(1)?).ok()?;
    Some(cairn_rollout::Attempt {
        release: release(i),
        sequence,
    })
}

/// The release of statement `i` (0: the baseline every member runs).
pub(crate) fn release(i: usize) -> Digest {
    Digest::of(format!("release {i}").as_bytes())
}

/// Statement `i` of the scenario.
fn statement(i: usize, sc: &Scenario) -> Statement {
    Statement {
        sequence: i as u64 + 1,
        release: release(i),
        plan: sc.plan.clone(),
    }
}

fn accepted(st: &Statement, at: Time) -> Accepted {
    Accepted {
        release: st.release,
        sequence: st.sequence,
        version: Some(st.sequence.to_string()),
        plan: st.plan.clone(),
        at,
        statement: Some(signed(st.sequence)),
    }
}
