//! Interoperability: what cairn signs, independent implementations accept.
//!
//! CI must install the Python checkers first:
//!
//! ```sh
//! python3 -m pip install 'securesystemslib[crypto]==1.6.0' 'in-toto-attestation==0.9.3'
//! ```
//!
//! * DSSE: securesystemslib's `Envelope.verify` checks a cairn-signed
//!   provenance envelope with the public key read from cairn's one-line
//!   export form, and refuses it once the payload is altered.
//! * SLSA: the payload is parsed with the in-toto attestation protobuf
//!   bindings (`Statement` and SLSA `Provenance` v1) with unknown fields
//!   refused, and `Statement.validate()` is run.
//!
//! These tests fail (never skip) when `python3` or the packages are missing:
//! a green run must mean the check happened.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use cairn_digest::Digest;
use cairn_trust::document::{Material, ProvenanceInputs};
use cairn_trust::{Document, Envelope, SigningKey, Statement};
use time::macros::datetime;

/// Seed of the signing key (deterministic so failures reproduce).
const SIGNER_SEED: [u8; 32] = [42; 32];
/// The name the public key is exported under.
const SIGNER_NAME: &str = "release-bot";
/// The artifact tree's stand-in bytes.
const ARTIFACT_BYTES: &[u8] = b"artifact tree";

/// Verifies `envelope.json` with the key in `key.pub`, then parses the
/// payload as an in-toto Statement with a SLSA Provenance v1 predicate.
const CHECKER: &str = r#"
import base64, json, sys
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from securesystemslib.exceptions import VerificationError
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

d, keyid = sys.argv[1], sys.argv[2]
prefix, name, b64 = open(f"{d}/key.pub").read().strip().split(":")
assert prefix == "cairn-ed25519-pub", prefix
key = SSlibKey(keyid, "ed25519", "ed25519", {"public": base64.b64decode(b64).hex()})

def load():  # from_dict rewrites the dict it is given, so read afresh
    return json.load(open(f"{d}/envelope.json"))
env = Envelope.from_dict(load())
assert list(env.verify([key], 1)) == [keyid]

tampered = Envelope.from_dict(dict(load(), payload=base64.b64encode(env.payload + b" ").decode()))
try:
    tampered.verify([key], 1)
    sys.exit("tampered envelope verified")
except VerificationError:
    pass

payload = json.loads(env.payload)
st = json_format.Parse(json.dumps(payload), statement_pb2.Statement(), ignore_unknown_fields=False)
Statement.copy_from_pb(st).validate()
assert st.predicate_type == "https://slsa.dev/provenance/v1", st.predicate_type
prov = json_format.Parse(json.dumps(payload["predicate"]), provenance_pb2.Provenance(),
                         ignore_unknown_fields=False)
deps = prov.build_definition.resolved_dependencies
assert [d.name for d in deps] == ["src", "toolchain"], deps
assert prov.run_details.builder.id == "https://cairn.dev/builder/v1"
assert prov.run_details.metadata.finished_on.seconds > prov.run_details.metadata.started_on.seconds
print("interop ok")
"#;

fn provenance() -> Statement {
    let material = |name: &str, uri: Option<&str>| Material {
        name: name.into(),
        digest: Digest::of(name.as_bytes()),
        uri: uri.map(Into::into),
    };
    Statement::slsa(ProvenanceInputs {
        subject_name: "hello".into(),
        artifact: Digest::of(ARTIFACT_BYTES),
        materials: vec![
            material("src", None),
            material(
                "toolchain",
                Some("https://static.rust-lang.org/rust-1.85.tar.xz"),
            ),
        ],
        builder_id: "https://cairn.dev/builder/v1".into(),
        build_type: "https://cairn.dev/build/v1".into(),
        action: Digest::of(b"action"),
        parameters: BTreeMap::from([("step".into(), "hello".into())]),
        started: datetime!(2026-01-01 11:00 UTC),
        finished: datetime!(2026-01-01 11:05:30 UTC),
    })
}

fn write_inputs(dir: &Path, key: &SigningKey) -> Envelope {
    let mut env = provenance().to_envelope();
    env.sign(key);
    std::fs::write(dir.join("envelope.json"), env.to_json()).unwrap();
    let line = key.public_key().to_line(SIGNER_NAME).unwrap();
    std::fs::write(dir.join("key.pub"), line + "\n").unwrap();
    env
}

#[test]
fn python_securesystemslib_and_in_toto_accept_cairn_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_seed(&SIGNER_SEED);
    write_inputs(dir.path(), &key);
    let out = Command::new("python3")
        .args(["-c", CHECKER])
        .arg(dir.path())
        .arg(key.key_id().to_string())
        .output()
        .expect("python3 must be installed to run the interop test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python checker failed (install: python3 -m pip install \
         'securesystemslib[crypto]==1.6.0' 'in-toto-attestation==0.9.3'):\n{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "interop ok");
}
