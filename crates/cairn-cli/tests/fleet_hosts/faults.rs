//! Faults during rollouts: a host cut off the network, the store going
//! away (a server restarted, S3 not answering), an agent killed holding a
//! slot, a canary failing health; each with a server and with S3.

use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::fixture;
use crate::fleet::{Fleet, StoreProcess, T};
use crate::harness::Server;
use crate::rollout::{assert_status, check_one_at_a_time_if, status_problem, Pace};
use crate::watch::{check_moved, check_one_at_a_time, observe};

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
    // is not counted in the record: it keeps the member away, and a slot
    // it claimed for its missed turn listed until a later rollout.)
    fleet.wait_rollout("done on 2", |r| r["phase"] == "done" && r["version"] == "2");
    // `cairn status` counts it by its record: back, updated, not away,
    // and a slot of it still listed is one it finished with.
    let (code, story) = fleet.story();
    assert_eq!(code, Some(0), "{story}");
    let member = format!("m{cut}");
    assert_eq!(story["away"], serde_json::json!([]), "{story}");
    assert_eq!(story["updating"], serde_json::json!([]), "{story}");
    let updated = story["updated"].as_array().unwrap();
    assert_eq!(updated.len(), fleet.members.len(), "{story}");
    assert!(updated.contains(&Value::from(member.as_str())), "{story}");
    for slot in story["slots"].as_array().unwrap() {
        assert_eq!(slot["holder"], "finished", "{story}");
    }
    eprintln!("{name}: whole scenario {:?}", began.elapsed());
}

#[test]
fn the_store_server_restarted_mid_rollout_and_every_agent_converges() {
    store_down_mid_rollout(Fleet::with_server("hosts-restart", 3, ""));
}

/// moto keeps its objects in memory, so an S3 store is not restarted:
/// it stops answering (SIGSTOP) for longer than an agent's store calls
/// wait, then answers again (SIGCONT).
#[test]
fn over_s3_the_store_stops_answering_mid_rollout_and_every_agent_converges() {
    store_down_mid_rollout(Fleet::with_s3("hosts-s3-stop", 3, ""));
}

/// v2 is promoted and the store goes away at once (a server is stopped
/// and started again; S3 stops answering for 12 s): every member still
/// moves one at a time and converges.
fn store_down_mid_rollout(mut fleet: Fleet) {
    let began = Instant::now();
    let name = fleet.channel.clone();
    let fx = fixture();
    let addr = fleet.store_addr();
    fleet.promote(&fx.v1);
    fleet.settle("1");

    let targets = fleet.targets();
    let (exit, answers) = observe(&targets, || {
        fleet.promote(&fx.v2);
        // The store goes away once the first slot is granted.
        fleet.wait_rollout("a slot granted", |r| {
            r["slots"].as_array().is_some_and(|s| !s.is_empty())
        });
        let midway = |fleet: &Fleet| {
            let on_v2 = (0..fleet.members.len())
                .filter(|&i| {
                    let s = fleet.host(i).run(|| fleet.members[i].status()).unwrap();
                    s["member"]["version"] == "2"
                })
                .count();
            assert!(
                on_v2 < fleet.members.len(),
                "the rollout was over with the store gone"
            );
        };
        let exit = match fleet.store.take() {
            Some(StoreProcess::Server(server)) => {
                let exit = server.terminate(Duration::from_secs(20));
                std::thread::sleep(Duration::from_secs(2));
                midway(&fleet);
                let launcher = fleet.net.hosts[0].launcher_str();
                let server = Server::start_under(&launcher, &fx.store, addr);
                fleet.store = Some(StoreProcess::Server(server));
                Some(exit)
            }
            Some(StoreProcess::S3(moto)) => {
                let pid = moto.pid() as libc::pid_t;
                // SAFETY: signals to the child this fleet started.
                assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
                std::thread::sleep(Duration::from_secs(12));
                midway(&fleet);
                assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
                fleet.store = Some(StoreProcess::S3(moto));
                None
            }
            None => unreachable!("a fleet has a store"),
        };

        let back = Instant::now();
        fleet.wait_all("2");
        eprintln!(
            "{name}: converged {:?} after the store came back",
            back.elapsed()
        );
        exit
    });
    if let Some(exit) = exit {
        assert!(exit.success(), "cairn server on SIGTERM: {exit:?}");
    }
    check_one_at_a_time_if(Pace::OneAtATime, &answers);
    for (i, a) in answers.iter().enumerate() {
        check_moved(i, a, "1", "2");
    }
    assert_status(&fleet, "2");
    eprintln!("{name}: whole scenario {:?}", began.elapsed());
}

/// m0 goes first, and dies (SIGKILL, at its own hand) once it switched
/// under its slot.
const M0_FIRST: &str = "\n[deploy]\norder = [\"m0\"]\n";

#[test]
fn an_agent_killed_holding_a_slot_frees_it_when_its_lease_ends() {
    killed_holding_a_slot(Fleet::with_server("hosts-kill", 4, M0_FIRST));
}

#[test]
fn over_s3_an_agent_killed_holding_a_slot_frees_it_when_its_lease_ends() {
    killed_holding_a_slot(Fleet::with_s3("hosts-s3-kill", 4, M0_FIRST));
}

fn killed_holding_a_slot(mut fleet: Fleet) {
    let began = Instant::now();
    let name = fleet.channel.clone();
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
    eprintln!("{name}: whole scenario {:?}", began.elapsed());
}

/// One canary, baked for 2 s.
const CANARY: &str = "\n[deploy]\nstrategy = \"canary\"\ncanary = { count = 1, bake = \"2s\" }\n";

#[test]
fn a_canary_failing_health_halts_the_rollout_and_leaves_the_other_hosts_alone() {
    failing_canary(Fleet::with_server("hosts-canary", 4, CANARY));
}

#[test]
fn over_s3_a_canary_failing_health_halts_the_rollout_and_leaves_the_other_hosts_alone() {
    failing_canary(Fleet::with_s3("hosts-s3-canary", 4, CANARY));
}

fn failing_canary(fleet: Fleet) {
    let name = fleet.channel.clone();
    let fx = fixture();
    let began = Instant::now();
    fleet.promote(&fx.v1);
    fleet.settle("1");

    let targets = fleet.targets();
    let (canary, answers) = observe(&targets, || {
        fleet.promote(&fx.v3); // fails its health check
        let halted = fleet.wait_rollout("halted", |r| r["phase"] == "halted");
        let who = halted["halted"]["member"].as_str().unwrap().to_string();
        let canary: usize = who[1..].parse().unwrap();
        fleet.host(canary).run(|| {
            fleet.members[canary].wait_for("the canary back on v1", T, |s| {
                s["member"]["version"] == "1"
                    && s["member"]["health"] == "healthy"
                    && s["counters"]["rollbacks"] == 1
            })
        });
        // The others get no turn: time to misbehave, then look.
        std::thread::sleep(Duration::from_secs(3));
        canary
    });
    for (i, a) in answers.iter().enumerate() {
        let versions: Vec<&str> = a
            .iter()
            .map(|p| {
                p.answer
                    .as_deref()
                    .unwrap_or_else(|e| panic!("member {i} failed a request: {e}"))
            })
            .collect();
        assert_eq!(versions.last(), Some(&"1"), "member {i} ends on v1");
        if i == canary {
            // While on trial the new process shares the socket.
            assert!(
                versions.iter().all(|v| ["1", "3"].contains(v)),
                "{versions:?}"
            );
        } else {
            assert!(
                versions.iter().all(|v| *v == "1"),
                "member {i}: {versions:?}"
            );
            let s = fleet.host(i).run(|| fleet.members[i].status()).unwrap();
            assert_eq!(s["counters"]["swaps"], 1, "member {i} never tried v3: {s}");
            assert_eq!(s["counters"]["rollbacks"], 0, "member {i}: {s}");
        }
    }
    let spans = check_one_at_a_time(&answers);
    for (i, s) in spans.iter().enumerate() {
        assert_eq!(s.is_empty(), i != canary, "member {i} swapping: {s:?}");
    }
    let record = fleet.rollout().unwrap();
    assert_eq!(record["phase"], "halted", "still halted: {record}");
    assert!(record["slots"].as_array().unwrap().is_empty(), "{record}");
    let (code, rows) = fleet.status_with_code();
    assert_eq!(code, Some(3), "cairn status on a halted rollout");
    assert_eq!(status_problem(&fleet, &rows, "1"), None);
    eprintln!("{name}: whole scenario {:?}", began.elapsed());
}
