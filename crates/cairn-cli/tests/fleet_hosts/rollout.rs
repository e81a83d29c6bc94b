//! Releases reaching every host; a host cut off mid-rollout; the store
//! restarted mid-rollout; the same over S3.

use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::fixture;
use crate::fleet::{
    answer, check_moved, check_one_at_a_time, observe, rolling, Answer, Fleet, StoreProcess, T,
};
use crate::harness::Server;

/// Waits until `cairn status` (run on a member host against the fleet's
/// store) shows one row per member, each running `version`, healthy;
/// panics with the last rows if it does not within [`T`]. (Records are
/// written apart from the work they report, so they trail it.)
fn assert_status(fleet: &Fleet, version: &str) {
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
fn status_problem(fleet: &Fleet, rows: &[Value], version: &str) -> Option<String> {
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
enum Pace {
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
    let (promoted, answers) = observe(&targets, || {
        let promoted = Instant::now();
        fleet.promote(v2);
        eprintln!("{}: promoted in {:?}", fleet.channel, promoted.elapsed());
        fleet.wait_all("2");
        promoted
    });
    let spans = check_one_at_a_time_if(pace, &answers);
    for (i, a) in answers.iter().enumerate() {
        let moved = check_moved(i, a, "1", "2");
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
    assert_status(fleet, "2");
    fleet.settle("2");
    eprintln!("{}: whole scenario {:?}", fleet.channel, began.elapsed());
}

/// The swapping spans of every member; with [`Pace::OneAtATime`], checks
/// they never overlap and that every member swapped.
fn check_one_at_a_time_if(pace: Pace, answers: &[Vec<Answer>]) -> Vec<Vec<(Instant, Instant)>> {
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

#[test]
fn a_host_cut_off_keeps_serving_restarts_its_service_and_converges_when_reconnected() {
    cut_off_and_reconnected(&Fleet::with_server("hosts-cut", 4, ""));
}

#[test]
fn over_s3_a_host_cut_off_keeps_serving_and_converges_when_reconnected() {
    cut_off_and_reconnected(&Fleet::with_s3("hosts-s3-cut", 4, ""));
}

/// The last member's host is cut off the network once v1 is everywhere:
/// its agent reports the outage and restarts its service (killed) while
/// cut off; v2 reaches the others one at a time without it, and it
/// converges once reconnected.
fn cut_off_and_reconnected(fleet: &Fleet) {
    let fx = fixture();
    let began = Instant::now();
    let name = fleet.channel.as_str();
    let cut = fleet.members.len() - 1;
    let (host, agent) = (fleet.host(cut), &fleet.members[cut]);
    let store = fleet.store_addr();
    fleet.promote(&fx.v1);
    fleet.settle("1");

    host.cut();
    let cut_at = Instant::now();
    let reach = host.run(|| TcpStream::connect_timeout(&store, Duration::from_secs(1)));
    assert!(reach.is_err(), "the cut-off host still reaches the store");
    // Killed while the agent's read of the store hangs, the service is
    // restarted (the agent does not wait on the store to look after it)...
    std::thread::sleep(Duration::from_secs(1));
    let pids = agent.service_pids();
    assert_eq!(pids.len(), 1, "{pids:?}");
    // SAFETY: kill(2) on the service process the agent started.
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
    let killed = Instant::now();
    host.run(|| {
        agent.wait_for("the service restarted", T, |s| {
            s["member"]["health"] == "healthy"
                && s["processes"]
                    .as_array()
                    .is_some_and(|p| p.len() == 1 && p[0]["pid"] != pids[0])
        })
    });
    eprintln!(
        "{name}: service restarted {:?} after kill -9",
        killed.elapsed()
    );
    // ...and it reports the store unreachable.
    host.run(|| {
        agent.wait_for("the store unreachable", T, |s| {
            s["member"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("store unreachable"))
        })
    });
    eprintln!(
        "{name}: outage reported {:?} after the cut",
        cut_at.elapsed()
    );
    assert_eq!(fleet.answer(cut).as_deref(), Ok("1"));

    let targets = fleet.targets();
    let (reconnected, answers) = observe(&targets, || {
        fleet.promote(&fx.v2);
        for i in (0..fleet.members.len()).filter(|&i| i != cut) {
            fleet.host(i).run(|| fleet.members[i].wait_serving("2", T));
        }
        // The others are done; the cut-off host still runs v1, healthy.
        std::thread::sleep(Duration::from_secs(2));
        let status = fleet.host(cut).run(|| fleet.members[cut].status()).unwrap();
        assert_eq!(status["member"]["version"], "1", "{status}");
        assert_eq!(status["member"]["health"], "healthy", "{status}");
        fleet.host(cut).reconnect();
        let reconnected = Instant::now();
        fleet
            .host(cut)
            .run(|| fleet.members[cut].wait_serving("2", T));
        eprintln!(
            "{name}: converged {:?} after reconnecting",
            reconnected.elapsed()
        );
        reconnected
    });
    // The rollout went on one at a time without the cut-off host.
    check_one_at_a_time_if(Pace::OneAtATime, &answers);
    for (i, a) in answers.iter().enumerate() {
        let moved = check_moved(i, a, "1", "2");
        if i == cut {
            assert!(
                moved.first_new > reconnected,
                "the cut-off host moved while cut off"
            );
        } else {
            assert!(
                moved.first_new < reconnected,
                "member {i} waited for the cut-off host"
            );
        }
    }
    assert_status(fleet, "2");
    // The rollout is done on v2. (The returning member's own late update
    // is not counted in it: the record keeps it away, its slot listed
    // until a later rollout; so no more is asserted of the record here.)
    fleet.wait_rollout("done on 2", |r| r["phase"] == "done" && r["version"] == "2");
    eprintln!("{name}: whole scenario {:?}", began.elapsed());
}

#[test]
fn the_store_server_restarted_mid_rollout_and_every_agent_converges() {
    let began = Instant::now();
    let mut fleet = Fleet::with_server("hosts-restart", 3, "");
    let fx = fixture();
    let addr = fleet.store_addr();
    fleet.promote(&fx.v1);
    fleet.settle("1");

    let targets = fleet.targets();
    let (exit, answers) = observe(&targets, || {
        let Some(StoreProcess::Server(server)) = fleet.store.take() else {
            unreachable!("a server fleet")
        };
        fleet.promote(&fx.v2);
        let exit = server.terminate(Duration::from_secs(20));
        std::thread::sleep(Duration::from_secs(2));
        let launcher = fleet.net.hosts[0].launcher_str();
        let server = Server::start_under(&launcher, &fx.store, addr);
        fleet.store = Some(StoreProcess::Server(server));
        let restarted = Instant::now();
        fleet.wait_all("2");
        eprintln!(
            "hosts-restart: converged {:?} after the restart",
            restarted.elapsed()
        );
        exit
    });
    assert!(exit.success(), "cairn server on SIGTERM: {exit:?}");
    check_one_at_a_time_if(Pace::OneAtATime, &answers);
    for (i, a) in answers.iter().enumerate() {
        check_moved(i, a, "1", "2");
    }
    assert_status(&fleet, "2");
    eprintln!("hosts-restart: whole scenario {:?}", began.elapsed());
}

#[test]
fn an_agent_killed_holding_a_slot_frees_it_when_its_lease_ends() {
    let began = Instant::now();
    // m0 goes first, and dies (SIGKILL, at its own hand) once it switched
    // under its slot.
    let mut fleet = Fleet::with_server("hosts-kill", 4, "\n[deploy]\norder = [\"m0\"]\n");
    let fx = fixture();
    fleet.promote(&fx.v1);
    fleet.settle("1");
    let detached = fleet.members[0].signal_and_wait(libc::SIGUSR2);
    assert_eq!(detached.code(), Some(0), "m0 detaches, its service running");
    fleet.restart_member(0, &[("CAIRN_AGENT_CRASH_AT", "switched")]);
    fleet.host(0).run(|| fleet.members[0].wait_serving("1", T));

    let targets = fleet.targets();
    let (restarted, answers) = observe(&targets, || {
        fleet.promote(&fx.v2);
        let held = fleet.wait_rollout("m0 holding a slot", |r| {
            r["slots"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["member"] == "m0"))
        });
        let m0 = fleet.members[0].wait_exit(T);
        assert_eq!(m0.signal(), Some(libc::SIGKILL), "m0 died by SIGKILL");
        let expires = held["slots"][0]["expires"].as_i64().unwrap();
        for i in 1..fleet.members.len() {
            let s = fleet.host(i).run(|| fleet.members[i].wait_serving("2", T));
            let started = s["last_update"]["started"].as_i64().unwrap() / 1000;
            assert!(
                started >= expires,
                "member {i} swapped before m0's lease ended ({expires}): {s}"
            );
        }
        let done = fleet.wait_rollout("done without m0", |r| r["phase"] == "done");
        assert!(done["slots"].as_array().unwrap().is_empty(), "{done}");
        // m0 comes back and takes its turn.
        let restarted = Instant::now();
        fleet.restart_member(0, &[]);
        fleet.host(0).run(|| fleet.members[0].wait_serving("2", T));
        restarted
    });
    check_one_at_a_time(&answers[1..]);
    for (i, a) in answers.iter().enumerate() {
        let moved = check_moved(i, a, "1", "2");
        if i == 0 {
            assert!(moved.first_new > restarted, "m0 served v2 while dead");
        }
    }
    assert_status(&fleet, "2");
    eprintln!("hosts-kill: whole scenario {:?}", began.elapsed());
}
