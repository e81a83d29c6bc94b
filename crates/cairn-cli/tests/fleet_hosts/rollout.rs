//! Releases reaching every host, at once and one at a time, over a
//! server and over S3; and the checks every scenario shares.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::fixture;
use crate::fleet::{rolling, Fleet, T};
use crate::watch::{answer, check_moved, check_one_at_a_time, observe, Answer};

/// Waits until `cairn status` (run on a member host against the fleet's
/// store) shows one row per member, each running `version`, healthy;
/// panics with the last rows if it does not within [`T`]. (Records are
/// written apart from the work they report, so they trail it.)
pub(crate) fn assert_status(fleet: &Fleet, version: &str) {
    let began = Instant::now();
    loop {
        let rows = fleet.status();
        let Some(problem) = status_problem(fleet, &rows, version) else {
            return;
        };
        assert!(
            began.elapsed() < T,
            "cairn status: {problem}; rows: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What is wrong with the status rows, if anything.
pub(crate) fn status_problem(fleet: &Fleet, rows: &[Value], version: &str) -> Option<String> {
    let mut agents: Vec<&str> = rows.iter().filter_map(|r| r["agent"].as_str()).collect();
    agents.sort();
    let expected: Vec<String> = (0..fleet.members.len()).map(|i| format!("m{i}")).collect();
    if agents != expected {
        return Some(format!("members {agents:?}, not {expected:?}"));
    }
    rows.iter().find_map(|row| {
        let record = &row["record"];
        let ok = row["set"] == fleet.channel.as_str()
            && record["version"] == version
            && record["health"] == "healthy"
            && record["state"] == "running";
        (!ok).then(|| format!("not running {version} healthy: {row}"))
    })
}

/// How a rollout may take members down.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Pace {
    /// Every member at once.
    AtOnce,
    /// At most one member swapping at any moment.
    OneAtATime,
}

/// `v1` promoted: every host serves it on its own address, and `cairn
/// status` lists every member healthy; then `v2` promoted: every host
/// moves to it, every request answered, at the `pace` the plan says.
fn deploy_then_update(fleet: &Fleet, (v1, v2): (&str, &str), pace: Pace) {
    let began = Instant::now();
    fleet.promote(v1);
    fleet.settle("1");
    eprintln!(
        "{}: v1 on every host in {:?}",
        fleet.channel,
        began.elapsed()
    );
    for i in 0..fleet.members.len() {
        assert_eq!(fleet.answer(i).as_deref(), Ok("1"), "member {i}");
        // The address exists only inside the test network.
        assert!(
            answer(fleet.members[i].http).is_err(),
            "member {i}'s address answers outside the test network"
        );
    }
    assert_status(fleet, "1");

    let targets = fleet.targets();
    let ((promoted, healthy), answers) = observe(&targets, || {
        let promoted = Instant::now();
        fleet.promote(v2);
        eprintln!("{}: promoted in {:?}", fleet.channel, promoted.elapsed());
        fleet.wait_all("2");
        (promoted, promoted.elapsed())
    });
    let spans = check_one_at_a_time_if(pace, &answers);
    let secs = |d: Duration| d.as_secs_f64();
    let mut timings = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        let moved = check_moved(i, a, "1", "2");
        timings.push(serde_json::json!({
            "answered_new_s": secs(moved.first_new.duration_since(promoted)),
            "swapping_s": spans[i]
                .iter()
                .map(|(a, b)| [secs(a.duration_since(promoted)), secs(b.duration_since(*a))])
                .collect::<Vec<_>>(),
        }));
        eprintln!(
            "{}: member {i} answered 2 after {:?}, both for {:?}, swapping {:?} ({} polls)",
            fleet.channel,
            moved.first_new.duration_since(promoted),
            moved.last_old.map(|t| t.duration_since(moved.first_new)),
            spans[i]
                .iter()
                .map(|(a, b)| (a.duration_since(promoted), b.duration_since(*a)))
                .collect::<Vec<_>>(),
            a.len()
        );
    }
    // One line for bench/fleet.sh: from the promotion until every member
    // served v2 healthy, and per member when it first answered v2 and
    // when (and how long) its status said it swapped.
    let timings = serde_json::json!({
        "promote_to_all_healthy_s": secs(healthy),
        "members": timings,
    });
    eprintln!("{}: timings {timings}", fleet.channel);
    assert_status(fleet, "2");
    fleet.settle("2");
    eprintln!("{}: whole scenario {:?}", fleet.channel, began.elapsed());
}

/// The swapping spans of every member; with [`Pace::OneAtATime`], checks
/// they never overlap and that every member swapped.
pub(crate) fn check_one_at_a_time_if(
    pace: Pace,
    answers: &[Vec<Answer>],
) -> Vec<Vec<(Instant, Instant)>> {
    if pace == Pace::AtOnce {
        return answers.iter().map(|_| Vec::new()).collect();
    }
    let spans = check_one_at_a_time(answers);
    for (i, s) in spans.iter().enumerate() {
        assert!(!s.is_empty(), "member {i} was never seen swapping");
    }
    spans
}

#[test]
fn at_once_every_host_runs_the_release_and_moves_to_the_next_without_a_failed_request() {
    let at_once = "\n[deploy]\nstrategy = \"at-once\"\n";
    let fleet = Fleet::with_server("hosts-server", 4, at_once);
    let fx = fixture();
    deploy_then_update(&fleet, (&fx.v1, &fx.v2), Pace::AtOnce);
}

#[test]
fn a_rolling_release_across_five_hosts_has_at_most_one_member_unavailable() {
    let fleet = Fleet::with_server("hosts-rolling", 5, "");
    let releases = rolling();
    deploy_then_update(&fleet, (&releases.v1, &releases.v2), Pace::OneAtATime);
    let done = fleet.wait_rollout("done", |r| r["phase"] == "done");
    assert_eq!(done["done"], 5, "{done}");
    assert_eq!(done["waves"].as_array().unwrap().len(), 5, "{done}");
    assert!(done["slots"].as_array().unwrap().is_empty(), "{done}");
}

#[test]
fn over_s3_a_release_reaches_every_host_one_at_a_time() {
    let fleet = Fleet::with_s3("hosts-s3", 4, "");
    let fx = fixture();
    deploy_then_update(&fleet, (&fx.v1, &fx.v2), Pace::OneAtATime);
}
