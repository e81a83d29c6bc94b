//! `[deploy]` as the JSON a release carries.
//!
//! Like the run specification ([`crate::RunSpec::to_json`]), the release
//! records its rollout strategy in the shape a team wrote in `cairn.toml`
//! (`max_unavailable = 2` or `"10%"`, `bake = "10m"`, gates as
//! `{ fleet }`, `{ freeze = { from, until } }` or `{ check, timeout }`),
//! with every default filled in. The agents read it back with
//! `cairn_rollout::Plan`, which parses exactly this shape.

use std::time::Duration;

use serde_json::{json, Value};

use crate::model::{Amount, Deploy, Gate, OnFailure, Strategy};

impl Deploy {
    /// The JSON form recorded in a release.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "strategy": match self.strategy {
                Strategy::AtOnce => "at-once",
                Strategy::Rolling => "rolling",
                Strategy::Canary { .. } => "canary",
            },
            "max_unavailable": amount(self.max_unavailable),
            "on_failure": match self.on_failure {
                OnFailure::Halt => "halt",
                OnFailure::Rollback => "rollback",
            },
            "gates": self.gates.iter().map(gate).collect::<Vec<_>>(),
        });
        if let Strategy::Canary { count, bake } = self.strategy {
            v["canary"] = json!({ "count": amount(count), "bake": duration(bake) });
        }
        v
    }
}

fn amount(a: Amount) -> Value {
    match a {
        Amount::Count(n) => json!(n),
        Amount::Percent(p) => json!(format!("{p}%")),
    }
}

fn gate(g: &Gate) -> Value {
    match g {
        Gate::Fleet {
            service,
            set,
            release,
        } => {
            let mut v = json!({ "fleet": format!("{service}/{set}") });
            if let Some(r) = release {
                v["release"] = json!(r.to_string());
            }
            v
        }
        Gate::Freeze { from, until } => json!({ "freeze": { "from": from, "until": until } }),
        Gate::Check { command, timeout } => {
            json!({ "check": command, "timeout": duration(*timeout) })
        }
    }
}

fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use crate::samples::{DESIGN_EXAMPLE, DIAMOND};
    use crate::Recipe;
    use serde_json::json;

    #[test]
    fn the_design_example_deploy_as_json() {
        let recipe = Recipe::parse("cairn.toml", DESIGN_EXAMPLE).unwrap();
        let json = recipe.deploy.unwrap().to_json();
        assert_eq!(
            json,
            json!({"strategy": "rolling", "max_unavailable": 1, "on_failure": "halt", "gates": []})
        );
    }

    #[test]
    fn canary_and_gates_as_json() {
        let recipe = Recipe::parse("cairn.toml", DIAMOND).unwrap();
        let json = recipe.deploy.unwrap().to_json();
        assert_eq!(json["canary"], json!({"count": 2, "bake": "10m"}));
        assert_eq!(json["gates"][0], json!({"fleet": "db/eu-1"}));
        assert_eq!(
            json["gates"][1]["freeze"],
            json!({"from": "2025-12-20T00:00:00Z", "until": "2026-01-05T00:00:00Z"})
        );
        assert_eq!(
            json["gates"][2],
            json!({"check": ["bin/ready"], "timeout": "30s"})
        );
    }
}
