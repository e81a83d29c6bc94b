//! The run specification as the JSON a release carries.
//!
//! A release records how an agent runs its artifact in the same shape as
//! `[release.run]` in `cairn.toml` (durations as `"1s"`, a health check as
//! `{ http, socket }`, `{ http }`, `{ tcp }` or `{ exec }`), so that what a
//! team wrote is what the agent reads, with every default filled in.

use std::time::Duration;

use serde_json::{json, Value};

use crate::model::{HealthCheck, Probe, RunSpec};

impl RunSpec {
    /// The JSON form recorded in a release.
    pub fn to_json(&self) -> Value {
        json!({
            "command": self.command,
            "sockets": self.sockets.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "health": self.health.as_ref().map(health_json),
            "stop": { "signal": self.stop.signal, "grace": duration(self.stop.grace) },
            "env": self.env,
        })
    }
}

fn health_json(h: &HealthCheck) -> Value {
    let mut probe = match &h.probe {
        Probe::SocketHttp { socket, path } => json!({ "http": path, "socket": socket.as_str() }),
        Probe::Http(url) => json!({ "http": url }),
        Probe::Tcp(addr) => json!({ "tcp": addr }),
        Probe::Exec(argv) => json!({ "exec": argv }),
    };
    let timing = [
        ("interval", h.interval),
        ("deadline", h.deadline),
        ("bake", h.bake),
    ];
    for (key, value) in timing {
        probe[key] = Value::String(duration(value));
    }
    probe
}

fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use crate::samples::DESIGN_EXAMPLE;
    use crate::Recipe;

    #[test]
    fn the_design_example_run_spec_as_json() {
        let recipe = Recipe::parse("cairn.toml", DESIGN_EXAMPLE).unwrap();
        let json = recipe.release.as_ref().unwrap().run.to_json();
        assert_eq!(json["command"][0], "bin/hello");
        assert_eq!(json["sockets"][0], "http");
        assert_eq!(json["health"]["http"], "/healthz");
        assert_eq!(json["health"]["socket"], "http");
        assert_eq!(json["health"]["deadline"], "30s");
        assert_eq!(json["stop"]["signal"], "TERM");
        assert_eq!(json["stop"]["grace"], "20s");
    }
}
