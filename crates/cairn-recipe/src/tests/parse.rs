//! The sample recipes parse to the expected model; the graph plans in
//! waves; no input makes the parser panic.

use std::time::Duration;

use proptest::prelude::*;

use super::{parse, HEADER};
use crate::model::{Amount, Gate, Input, MountSource, OnFailure, Probe, Strategy};
use crate::samples::{DESIGN_EXAMPLE, DIAMOND, ROOTFS_DIGEST, VENDOR_DIGEST};
use crate::{Name, Recipe, UnknownStep};

fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

#[test]
fn design_example_parses() {
    let r = parse(DESIGN_EXAMPLE);
    assert_eq!(r.service, n("hello"));
    assert_eq!(
        r.inputs[&n("rootfs")],
        Input::Tree(ROOTFS_DIGEST.parse().unwrap())
    );
    let Input::Fetch { digest, unpack, .. } = &r.inputs[&n("vendor")] else {
        panic!("vendor is a fetch");
    };
    assert_eq!(
        (digest.to_string().as_str(), *unpack),
        (VENDOR_DIGEST, true)
    );
    let build = &r.steps[&n("build")];
    assert_eq!(build.mounts["/src"].source, MountSource::Input(n("src")));
    assert_eq!(
        (build.workdir.as_str(), build.timeout),
        ("/src", Duration::from_secs(600))
    );
    let run = &r.release.as_ref().unwrap().run;
    let health = run.health.as_ref().unwrap();
    assert_eq!(
        health.probe,
        Probe::SocketHttp {
            socket: n("http"),
            path: "/healthz".into()
        }
    );
    assert_eq!(health.bake, Duration::from_secs(5));
    assert_eq!(
        (run.stop.signal.as_str(), run.stop.grace),
        ("TERM", Duration::from_secs(20))
    );
    let deploy = r.deploy.unwrap();
    assert_eq!(
        (deploy.strategy, deploy.max_unavailable, deploy.on_failure),
        (Strategy::Rolling, Amount::Count(1), OnFailure::Halt)
    );
}

#[test]
fn diamond_parses() {
    let r = parse(DIAMOND);
    let app = &r.steps[&n("app")];
    assert_eq!(app.limits.memory, 2 << 30);
    assert_eq!(app.outputs, ["bin/app", "share/doc"]);
    assert!(r.steps[&n("gen")].mounts["/src"].writable);
    let deploy = r.deploy.unwrap();
    let bake = Duration::from_secs(600);
    let count = Amount::Count(2);
    assert_eq!(deploy.strategy, Strategy::Canary { count, bake });
    assert_eq!(deploy.max_unavailable, Amount::Count(2));
    assert!(
        matches!(&deploy.gates[0], Gate::Fleet { service, release: None, .. } if service.as_str() == "db")
    );
    let Gate::Freeze { from, .. } = &deploy.gates[1] else {
        panic!("freeze gate");
    };
    assert_eq!(from, "2025-12-20T00:00:00Z");
}

#[test]
fn plan_in_waves() {
    let r = parse(DIAMOND);
    let names = |waves: Vec<Vec<Name>>| -> Vec<Vec<String>> {
        waves
            .into_iter()
            .map(|w| w.iter().map(|s| s.to_string()).collect())
            .collect()
    };
    assert_eq!(
        names(r.plan("app").unwrap()),
        [vec!["gen"], vec!["docs", "lib"], vec!["app"]]
    );
    assert_eq!(names(r.plan("lib").unwrap()), [vec!["gen"], vec!["lib"]]);
    assert_eq!(names(r.plan("lint").unwrap()), [vec!["lint"]]);
    assert_eq!(r.plan("nope"), Err(UnknownStep("nope".into())));
}

#[test]
fn minimal_recipe_defaults() {
    let r = parse(&format!("{HEADER}\n[steps.b]\nrun = [\"x\"]\n"));
    let b = &r.steps[&n("b")];
    assert_eq!(
        (b.workdir.as_str(), b.timeout),
        ("/", crate::model::DEFAULT_TIMEOUT)
    );
    assert!(r.release.is_none() && r.deploy.is_none());
}

#[test]
fn deploy_takes_percentages_and_a_failure_policy() {
    let text = format!(
        "{HEADER}\n[deploy]\nstrategy = \"canary\"\nmax_unavailable = \"10%\"\n\
         canary = {{ count = \"5 %\", bake = \"1m\" }}\non_failure = \"rollback\"\n"
    );
    let deploy = parse(&text).deploy.unwrap();
    assert_eq!(deploy.max_unavailable, Amount::Percent(10));
    let bake = Duration::from_secs(60);
    let count = Amount::Percent(5);
    assert_eq!(deploy.strategy, Strategy::Canary { count, bake });
    assert_eq!(deploy.on_failure, OnFailure::Rollback);
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*") {
        let _ = Recipe::parse("cairn.toml", &text);
    }

    #[test]
    fn truncated_example_never_panics(cut in 0usize..DESIGN_EXAMPLE.len(), junk in "[\\[\\]{}=\",a-z/. \n]{0,8}") {
        let mut text = DESIGN_EXAMPLE[..cut].to_owned();
        text.push_str(&junk);
        if let Err(e) = Recipe::parse("cairn.toml", &text) {
            let at = e.location.expect("every error has a location");
            prop_assert!(at.line >= 1 && at.column >= 1);
        }
    }
}

#[test]
fn oci_inputs_parse_pinned() {
    let text = format!(
        "{HEADER}[inputs.base]\noci = \"127.0.0.1:5000/debian@{ROOTFS_DIGEST}\"\n[inputs.local]\noci = \"./img@{ROOTFS_DIGEST}\"\n"
    );
    let r = parse(&text);
    let Input::Oci { image, digest } = &r.inputs[&n("base")] else {
        panic!("base is an image");
    };
    assert_eq!(image, &format!("127.0.0.1:5000/debian@{ROOTFS_DIGEST}"));
    assert_eq!(digest.to_string(), ROOTFS_DIGEST);
    assert!(matches!(&r.inputs[&n("local")], Input::Oci { .. }));
}
