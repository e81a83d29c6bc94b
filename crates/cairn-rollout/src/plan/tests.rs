use std::time::Duration;

use serde_json::json;

use super::*;

fn plan(v: serde_json::Value) -> Plan {
    Plan::from_json(&v).unwrap()
}

fn error(v: serde_json::Value) -> String {
    Plan::from_json(&v).unwrap_err().to_string()
}

#[test]
fn the_recipes_deploy_json_is_a_plan() {
    use cairn_recipe::samples::{DESIGN_EXAMPLE, DIAMOND};
    let recipe = cairn_recipe::Recipe::parse("cairn.toml", DIAMOND).unwrap();
    let p = Plan::from_json(&recipe.deploy.unwrap().to_json()).unwrap();
    let bake = Duration::from_secs(600);
    let count = Amount::Count(2);
    assert_eq!(p.strategy, Strategy::Canary { count, bake });
    assert_eq!(p.max_unavailable, Amount::Count(2));
    assert_eq!(p.gates.len(), 3);
    assert_eq!(p.gates[0].to_string(), "fleet db/eu-1 healthy");
    assert_eq!(
        p.gates[1].to_string(),
        "freeze from 2025-12-20T00:00:00Z until 2026-01-05T00:00:00Z"
    );
    assert_eq!(p.gates[2].to_string(), "check `bin/ready`");
    let recipe = cairn_recipe::Recipe::parse("cairn.toml", DESIGN_EXAMPLE).unwrap();
    let p = Plan::from_json(&recipe.deploy.unwrap().to_json()).unwrap();
    assert_eq!(p, Plan::default());
}

#[test]
fn plans_round_trip_through_json() {
    let p = plan(json!({
        "strategy": "canary", "max_unavailable": "10%",
        "canary": {"count": "5%", "bake": "1m"}, "on_failure": "rollback",
        "order": ["b", "a"],
        "gates": [{"fleet": "db/eu", "release": format!("sha256:{}", "a".repeat(64))},
                  {"freeze": {"from": "2026-01-01T00:00:00+01:00", "until": "2026-01-02T00:00:00Z"}},
                  {"check": ["true"], "timeout": "5s"}],
    }));
    assert_eq!(p.max_unavailable, Amount::Percent(10));
    assert_eq!(p.on_failure, OnFailure::Rollback);
    assert_eq!(p.order, Order::Pinned(vec!["b".into(), "a".into()]));
    let Gate::Freeze { from, .. } = p.gates[1] else {
        panic!("freeze")
    };
    assert_eq!(from, Time::from_secs(1_767_222_000));
    assert_eq!(Plan::from_json(&p.to_json()).unwrap(), p);
    assert_eq!(
        p.to_json()["gates"][1]["freeze"]["from"],
        "2025-12-31T23:00:00Z"
    );
}

#[test]
fn an_agent_toml_override_reads_as_a_plan() {
    let text = r#"
strategy = "rolling"
max_unavailable = 3
gates = [{ freeze = { from = 2025-12-20T00:00:00Z, until = 2026-01-05T00:00:00Z } }]
"#;
    let p: Plan = toml::from_str(text).unwrap();
    assert_eq!(p.capacity(100), 3);
    let inside = Time::from_secs(1_766_300_000);
    assert_eq!(p.frozen_until(inside), Some(Time::from_secs(1_767_571_200)));
    // An update that would still run when the window begins is held, and
    // the window is widened by the skew on both sides.
    let (from, until) = (
        Time::from_secs(1_766_188_800),
        Time::from_secs(1_767_571_200),
    );
    let skew = Duration::from_secs(2);
    let before = from.minus(Duration::from_secs(90));
    assert_eq!(
        p.frozen_during(before, before.plus(Duration::from_secs(60)), skew),
        None
    );
    assert_eq!(
        p.frozen_during(before, before.plus(Duration::from_secs(89)), skew),
        Some(until.plus(skew))
    );
    assert_eq!(
        p.frozen_during(
            until.plus(Duration::from_secs(1)),
            until.plus(Duration::from_secs(60)),
            skew
        ),
        Some(until.plus(skew))
    );
    assert_eq!(
        p.frozen_during(until.plus(skew), until.plus(Duration::from_secs(60)), skew),
        None
    );
    let err = toml::from_str::<Plan>("max_unavailable = 1\nspeed = 2\n").unwrap_err();
    assert!(err.to_string().contains("unknown field `speed`"), "{err}");
}

#[test]
fn bad_plans_say_what_is_wrong() {
    let cases = [
        (
            json!({"max_unavailable": 0}),
            "`max_unavailable` must be at least 1",
        ),
        (
            json!({"max_unavailable": "0%"}),
            "`max_unavailable` of 0% is out of range",
        ),
        (
            json!({"max_unavailable": "ten"}),
            "\"ten\" is not a percentage",
        ),
        (
            json!({"canary": {"count": 1}}),
            "`canary` settings need `strategy = \"canary\"`",
        ),
        (
            json!({"strategy": "canary", "canary": {"count": "101%"}}),
            "`canary count` of 101%",
        ),
        (
            json!({"gates": [{"fleet": "db"}]}),
            "gate fleet \"db\" must be \"service/set\"",
        ),
        (
            json!({"gates": [{"fleet": "db/eu", "release": "md5:1"}]}),
            "is not a sha256: digest",
        ),
        (
            json!({"gates": [{"check": []}]}),
            "gate `check` must not be empty",
        ),
        (
            json!({"gates": [{"check": ["x"], "fleet": "a/b"}]}),
            "exactly one of",
        ),
        (
            json!({"gates": [{"freeze": {"from": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}}]}),
            "ends (2026-01-01T00:00:00Z) before it starts",
        ),
        (
            json!({"gates": [{"freeze": {"from": "2026-01-02", "until": "2026-01-03"}}]}),
            "not an RFC 3339 time",
        ),
        (json!({"order": "random"}), "order \"random\" is unknown"),
        (json!({"order": ["a", "a"]}), "member \"a\" is named twice"),
        (json!({"strategy": "yolo"}), "unknown variant `yolo`"),
        (json!({"surge": 1}), "unknown field `surge`"),
    ];
    for (v, want) in cases {
        let e = error(v.clone());
        assert!(e.starts_with("rollout plan is not valid: "), "{e}");
        assert!(e.contains(want), "{v}: {e}");
    }
}

#[test]
fn capacity_and_canary_sizes() {
    let pct = |p| Plan {
        max_unavailable: Amount::Percent(p),
        ..Plan::default()
    };
    assert_eq!(pct(10).capacity(10_000), 1000);
    assert_eq!(pct(10).capacity(19), 1, "rounds down");
    assert_eq!(pct(10).capacity(3), 1, "never zero");
    assert_eq!(Plan::default().capacity(50), 1);
    let at_once = Plan {
        strategy: Strategy::AtOnce,
        ..Plan::default()
    };
    assert_eq!(at_once.capacity(50), 50);
    let canary = |count| Plan {
        strategy: Strategy::Canary {
            count,
            bake: Duration::ZERO,
        },
        ..Plan::default()
    };
    assert_eq!(
        canary(Amount::Percent(5)).canary_count(30),
        Some(2),
        "rounds up"
    );
    assert_eq!(
        canary(Amount::Count(9)).canary_count(4),
        Some(4),
        "at most all"
    );
    assert_eq!(Plan::default().canary_count(4), None);
}
