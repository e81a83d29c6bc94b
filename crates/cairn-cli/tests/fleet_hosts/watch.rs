//! Watching a fleet as its users and operators would: every member's
//! service and agent status polled from inside its host while something
//! happens ([`observe`]), and what the polls must show.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::http_get;
use crate::support::netns::Host;

/// A member, as [`observe`] polls it.
pub struct Target {
    pub host: Host,
    pub http: SocketAddr,
    pub status: SocketAddr,
}

/// The version a service answers `GET /` with, or why there was none.
pub fn answer(addr: SocketAddr) -> Result<String, String> {
    match http_get(addr, "/")? {
        (200, body) => body
            .split(' ')
            .nth(3)
            .map(str::to_string)
            .ok_or_else(|| format!("not a version: {body:?}")),
        (code, body) => Err(format!("HTTP {code}: {body}")),
    }
}

/// One poll of one member: when, what its service answered, and what
/// its agent said it was doing (`member.state` of `/status`).
pub struct Answer {
    pub at: Instant,
    pub answer: Result<String, String>,
    pub state: Option<String>,
}

/// Polls every target's service and agent status (every 25 ms, from
/// inside its host) while `during` runs; returns what `during` returned
/// and every member's polls.
pub fn observe<R>(targets: &[Target], during: impl FnOnce() -> R) -> (R, Vec<Vec<Answer>>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let pollers: Vec<_> = targets
            .iter()
            .map(|t| {
                let stop = &stop;
                s.spawn(move || {
                    t.host.run(|| {
                        let mut answers = Vec::new();
                        while !stop.load(Ordering::SeqCst) {
                            let at = Instant::now();
                            let answer = answer(t.http);
                            let state = http_get(t.status, "/status")
                                .ok()
                                .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
                                .and_then(|v| v["member"]["state"].as_str().map(str::to_string));
                            answers.push(Answer { at, answer, state });
                            std::thread::sleep(Duration::from_millis(25));
                        }
                        answers
                    })
                })
            })
            .collect();
        let result = during();
        stop.store(true, Ordering::SeqCst);
        let answers = pollers.into_iter().map(|p| p.join().unwrap()).collect();
        (result, answers)
    })
}

/// The spans (first and last poll) in which each member's agent said it
/// was swapping (`updating` or `rolling-back`); checks that no two
/// members' spans overlap, which sampling can shorten but never make up:
/// at most one member unavailable at any moment.
pub fn check_one_at_a_time(answers: &[Vec<Answer>]) -> Vec<Vec<(Instant, Instant)>> {
    let spans: Vec<Vec<(Instant, Instant)>> = answers.iter().map(|a| swapping_spans(a)).collect();
    for (i, a) in spans.iter().enumerate() {
        for (j, b) in spans.iter().enumerate().skip(i + 1) {
            for x in a {
                for y in b {
                    assert!(
                        x.1 < y.0 || y.1 < x.0,
                        "members {i} and {j} swapping at once: {x:?} and {y:?}"
                    );
                }
            }
        }
    }
    spans
}

fn swapping_spans(answers: &[Answer]) -> Vec<(Instant, Instant)> {
    let mut spans = Vec::new();
    let mut open: Option<(Instant, Instant)> = None;
    for a in answers {
        let swapping = matches!(a.state.as_deref(), Some("updating" | "rolling-back"));
        match (&mut open, swapping) {
            (Some(span), true) => span.1 = a.at,
            (None, true) => open = Some((a.at, a.at)),
            (Some(_), false) => spans.extend(open.take()),
            (None, false) => {}
        }
    }
    spans.extend(open);
    spans
}

/// When a member moved: the first answer of the new version, and the
/// last of the old one (after the first while both processes share the
/// socket during the swap).
pub struct Moved {
    pub first_new: Instant,
    pub last_old: Option<Instant>,
}

/// Checks one member's answers: every request answered, by `from` or `to`
/// only, `from` first and `to` last.
pub fn check_moved(member: usize, answers: &[Answer], from: &str, to: &str) -> Moved {
    let mut first_new = None;
    let mut last_old = None;
    for Answer { at, answer, .. } in answers {
        match answer.as_deref() {
            Ok(v) if v == to => {
                first_new.get_or_insert(*at);
            }
            Ok(v) if v == from => last_old = Some(*at),
            other => panic!("member {member} answered {other:?} (moving {from} to {to})"),
        }
    }
    let first_new = first_new.unwrap_or_else(|| panic!("member {member} never answered {to}"));
    assert_eq!(
        answers.last().unwrap().answer.as_deref(),
        Ok(to),
        "member {member}'s last answer"
    );
    assert!(
        answers[0].answer.as_deref() == Ok(from),
        "member {member} answered {to} before the promotion"
    );
    Moved {
        first_new,
        last_old: last_old.filter(|&t| t > first_new),
    }
}
