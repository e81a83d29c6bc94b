//! What a release records of the pipeline: the tests that gated it, each
//! step's platform, read back by independent DSSE and in-toto readers.

use std::process::Command;

use serde_json::Value;

use crate::example;
use crate::support::cli::{step, text};
use crate::support::project::Project;

/// Checks the provenance envelope (argv 1) with the public key line
/// (argv 2) using securesystemslib's DSSE and the in-toto attestation
/// protobuf bindings (unknown fields refused), then prints the predicate's
/// `internalParameters` as JSON: an independent reader of what cairn signs.
const PROVENANCE_CHECKER: &str = r#"
import base64, json, sys
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

raw = json.load(open(sys.argv[1]))
prefix, name, b64 = open(sys.argv[2]).read().strip().split(":")
keyid = raw["signatures"][0]["keyid"]
key = SSlibKey(keyid, "ed25519", "ed25519", {"public": base64.b64decode(b64).hex()})
env = Envelope.from_dict(raw)
assert list(env.verify([key], 1)) == [keyid]
payload = json.loads(env.payload)
st = json_format.Parse(json.dumps(payload), statement_pb2.Statement(), ignore_unknown_fields=False)
Statement.copy_from_pb(st).validate()
prov = json_format.Parse(json.dumps(payload["predicate"]), provenance_pb2.Provenance(),
                         ignore_unknown_fields=False)
print(json.dumps(json_format.MessageToDict(prov.build_definition.internal_parameters)))
"#;

/// `cairn --json release --key ci` in `p`, then the provenance it signed
/// as the Python checkers read it (`internalParameters`), and `cairn
/// --json release show` of it.
fn release_with_provenance(p: &Project) -> (Value, Value) {
    let out = p.run(&["--json", "release", "--key", "ci"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let released: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cat = p.run(&["store", "cat", released["provenance"].as_str().unwrap()]);
    assert!(cat.status.success(), "{}", text(&cat.stderr));
    std::fs::write(p.root.join("provenance.json"), &cat.stdout).unwrap();
    let key = p.run(&["key", "export", "ci"]);
    assert!(key.status.success(), "{}", text(&key.stderr));
    std::fs::write(p.root.join("ci.pub"), &key.stdout).unwrap();
    let checked = Command::new("python3")
        .args(["-c", PROVENANCE_CHECKER])
        .arg(p.root.join("provenance.json"))
        .arg(p.root.join("ci.pub"))
        .output()
        .expect("python3 with securesystemslib and in-toto-attestation (.ci/run)");
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    let internal: Value = serde_json::from_slice(&checked.stdout).unwrap();
    let release = released["release"].as_str().unwrap();
    let shown = p.run(&["--json", "release", "show", release]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let verified = p.run(&["verify", release]);
    assert!(
        verified.status.success(),
        "cairn verify: {}",
        text(&verified.stderr)
    );
    (internal, serde_json::from_slice(&shown.stdout).unwrap())
}

fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64",
        other => panic!("no platform name for {other}"),
    }
}

#[test]
fn the_provenance_lists_the_tests_that_gated_the_release_and_each_steps_platform() {
    let p = example();
    let (code, steps, err) = p.test(&[]);
    assert_eq!(code, 0, "{err}");
    let (internal, shown) = release_with_provenance(&p);

    // Each required test (by name), with the action digest
    // `cairn test` ran and cached, and its result.
    let tests = internal["tests"].as_array().expect("tests listed");
    let names: Vec<&str> = tests.iter().map(|t| t["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["lint", "unit"]);
    for t in tests {
        let ran = step(&steps, t["step"].as_str().unwrap());
        let action = ran["action_digest"].as_str().unwrap();
        assert!(
            t["action"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{action}/")),
            "{t} vs {ran}"
        );
        assert_eq!(t["result"], "passed");
        assert_eq!(t["platform"], host_platform());
        assert_eq!(t["native"], true);
    }
    // The artifact's step (`build`; it mounts no other step) and its
    // platform; the tests are not steps the artifact needs.
    let built = internal["steps"].as_array().expect("steps listed");
    assert_eq!(built.len(), 1, "{built:?}");
    assert_eq!(built[0]["step"], "build");
    let action = step(&steps, "build")["action_digest"].as_str().unwrap();
    assert!(built[0]["action"].as_str().unwrap().starts_with(action));
    assert_eq!(built[0]["platform"], host_platform());

    // `release show --json` says the same.
    let shown_tests: Vec<(&str, &str)> = shown["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["step"].as_str().unwrap(), t["action"].as_str().unwrap()))
        .collect();
    let expected: Vec<(&str, &str)> = ["lint", "unit"]
        .iter()
        .map(|n| (*n, step(&steps, n)["action_digest"].as_str().unwrap()))
        .collect();
    assert_eq!(shown_tests, expected);
    assert_eq!(shown["steps"][0]["platform"], host_platform());
    let plain = p.run(&["release", "show", shown["release"].as_str().unwrap()]);
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let plain = text(&plain.stdout);
    for (name, action) in &expected {
        let line = format!(
            "test      {name} passed action {action} on {}",
            host_platform()
        );
        assert!(plain.contains(&line), "{line:?} not in:\n{plain}");
    }

    // No `requires`: no tests listed, the steps still are.
    let recipe = p.recipe();
    let ungated = recipe.replace("requires = [\"steps.unit\", \"steps.lint\"]\n", "");
    assert_ne!(ungated, recipe, "the example's requires line moved");
    p.write("cairn.toml", &ungated);
    let (internal, shown) = release_with_provenance(&p);
    assert_eq!(internal["tests"], serde_json::json!([]));
    assert_eq!(shown["tests"], serde_json::json!([]));
    assert_eq!(internal["steps"][0]["step"], "build");
    let plain = p.run(&["release", "show", shown["release"].as_str().unwrap()]);
    assert!(text(&plain.stdout).contains("tests     none required"));
}
