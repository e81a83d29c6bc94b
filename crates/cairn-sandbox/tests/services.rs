//! Services in the sandbox: started by pid 1 before the command, probed
//! until ready over the sandbox's own loopback, run as the command's
//! processes are, and gone when it ends. Busybox's `nc` and `httpd` are
//! the services.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_sandbox::{Probe, Readiness, Service, ServiceEnd, Termination};
use common::{assert_exit, host_processes_with, Fixture};

fn service(name: &str, script: &str, probe: Option<Probe>) -> Service {
    Service {
        name: name.into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: BTreeMap::from([("PATH".into(), "/bin".into())]),
        ready: probe.map(|probe| Readiness {
            probe,
            interval: Duration::from_millis(50),
            deadline: Duration::from_secs(5),
        }),
    }
}

#[test]
fn ready_services_answer_the_command_on_loopback_as_the_same_user() {
    let f = Fixture::new();
    let mut plan = f.plan("wget -q -O - http://127.0.0.1:8080/index.html; cat /tmp/flag");
    plan.services = vec![
        service(
            "web",
            "mkdir -p /tmp/www && id -u > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /tmp/www",
            Some(Probe::Http {
                addr: "127.0.0.1:8080".parse().unwrap(),
                path: "/index.html".into(),
            }),
        ),
        // Ready only once it wrote its flag: the command must see it.
        service(
            "slow",
            "sleep 0.3; echo flag > /tmp/flag; exec sleep 1000",
            Some(Probe::Exec(vec!["test".into(), "-f".into(), "/tmp/flag".into()])),
        ),
    ];
    let r = f.run(&plan);
    assert_exit(&r, 0);
    // The web service runs as the command's user, in the same sandbox.
    assert_eq!(r.stdout, "1000\nflag\n", "{}", r.stderr);
    // Nothing of the services outlives the step on the host.
    assert!(host_processes_with("httpd -f -p 127.0.0.1:8080").is_empty());
}

#[test]
fn a_service_that_exits_or_never_answers_ends_the_step_before_the_command() {
    let f = Fixture::new();
    let mut plan = f.plan("echo the command ran");
    plan.services = vec![service(
        "db",
        "echo starting db; exit 4",
        Some(Probe::Tcp("127.0.0.1:5432".parse().unwrap())),
    )];
    let r = f.run(&plan);
    assert_eq!(
        r.outcome.status,
        Termination::ServiceNotReady {
            service: 0,
            ended: Some(ServiceEnd::Exited(4))
        }
    );
    assert!(r.stdout.contains("starting db"), "{}", r.stdout);
    assert!(!r.stdout.contains("the command ran"), "{}", r.stdout);

    // Listening elsewhere: the probe never succeeds; the deadline ends it.
    plan.services = vec![service(
        "db",
        "exec httpd -f -p 127.0.0.1:5433",
        Some(Probe::Tcp("127.0.0.1:5432".parse().unwrap())),
    )];
    plan.services[0].ready.as_mut().unwrap().deadline = Duration::from_millis(500);
    let r = f.run(&plan);
    assert_eq!(
        r.outcome.status,
        Termination::ServiceNotReady {
            service: 0,
            ended: None
        }
    );
    assert!(!r.stdout.contains("the command ran"), "{}", r.stdout);

    // The second of two: its index is reported.
    plan.services = vec![
        service("ok", "exec sleep 100", None),
        service("bad", "exit 1", Some(Probe::Exec(vec!["false".into()]))),
    ];
    let r = f.run(&plan);
    assert_eq!(
        r.outcome.status,
        Termination::ServiceNotReady {
            service: 1,
            ended: Some(ServiceEnd::Exited(1))
        }
    );
}

#[test]
fn a_service_without_a_probe_runs_beside_the_command_and_dies_with_it() {
    let f = Fixture::new();
    let mut plan = f.plan("sleep 0.3; cat /tmp/started; pidof sleep >/dev/null && echo alive");
    plan.services = vec![service(
        "bg",
        "echo yes > /tmp/started; exec sleep 1000",
        None,
    )];
    let r = f.run(&plan);
    assert_exit(&r, 0);
    // Ended when the command did (the fixture's timeout is 10 s).
    assert_eq!(r.stdout, "yes\nalive\n");
}

#[test]
fn a_service_that_cannot_be_executed_is_named() {
    let f = Fixture::new();
    let mut plan = f.plan("true");
    plan.services = vec![Service {
        name: "missing".into(),
        argv: vec!["/no/such/server".into()],
        env: BTreeMap::new(),
        ready: None,
    }];
    let null = || std::fs::File::create("/dev/null").unwrap();
    let err = cairn_sandbox::run(&plan, null(), null()).unwrap_err();
    assert!(err.to_string().contains("/no/such/server"), "{err}");
}
