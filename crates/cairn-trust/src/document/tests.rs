use time::macros::datetime;

use super::*;
use crate::fixtures::{release, statement, ARTIFACT_BYTES, SERVICE};

#[test]
fn release_round_trips_through_its_payload() {
    let payload = release().to_payload();
    assert_eq!(Release::from_payload(&payload).unwrap(), release());
}

#[test]
fn a_release_without_deploy_keeps_its_payload_and_one_with_it_round_trips() {
    // A release made before `deploy` existed: the same bytes, the same digest.
    let old = br#"{"service":"hello","version":"1.2.3","artifact":{"hash":"sha256:0000000000000000000000000000000000000000000000000000000000000001","size":3},"action":{"hash":"sha256:0000000000000000000000000000000000000000000000000000000000000002","size":6},"run":{"command":["bin/hello"]},"provenance":{"hash":"sha256:0000000000000000000000000000000000000000000000000000000000000003","size":10},"created":"2026-01-01T12:00:00Z"}"#;
    let parsed = Release::from_payload(old).unwrap();
    assert_eq!(parsed.deploy, None);
    assert_eq!(parsed.to_payload(), old.to_vec());
    let mut with = release();
    with.deploy = Some(serde_json::json!({"strategy": "rolling", "max_unavailable": "10%"}));
    let payload = with.to_payload();
    assert_eq!(Release::from_payload(&payload).unwrap(), with);
    assert_ne!(payload, release().to_payload());
}

#[test]
fn times_are_rfc3339() {
    let json: serde_json::Value = serde_json::from_slice(&release().to_payload()).unwrap();
    assert_eq!(json["created"], "2026-01-01T12:00:00Z");
    assert_eq!(json["artifact"]["size"], ARTIFACT_BYTES.len());
}

#[test]
fn unknown_fields_are_refused() {
    let mut json: serde_json::Value = serde_json::from_slice(&statement().to_payload()).unwrap();
    json["extra"] = true.into();
    let err = ChannelStatement::from_payload(json.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("unknown field `extra`"), "{err}");
}

#[test]
fn bad_names_are_refused_with_the_field() {
    let mut st = statement();
    st.channel = "Prod".into();
    let err = ChannelStatement::from_payload(&st.to_payload()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "channel name \"Prod\" is invalid: it must start with a-z or 0-9"
    );
}

#[test]
fn name_rule() {
    for good in ["a", "hello", "0x", "a.b_c-d", &"a".repeat(63)] {
        assert!(validate_name("service", good).is_ok(), "{good}");
    }
    for bad in ["", "-a", ".a", "a/b", "a b", "A", &"a".repeat(64), "é"] {
        assert!(validate_name("service", bad).is_err(), "{bad:?}");
    }
}

fn provenance_inputs() -> ProvenanceInputs {
    ProvenanceInputs {
        subject_name: SERVICE.into(),
        artifact: Digest::of(ARTIFACT_BYTES),
        materials: vec![Material {
            name: "src".into(),
            digest: Digest::of(b"src"),
            uri: Some("git+https://example.com/hello".into()),
        }],
        builder_id: "https://cairn.dev/builder/v1".into(),
        build_type: "https://cairn.dev/build/v1".into(),
        action: Digest::of(b"action"),
        parameters: Default::default(),
        started: datetime!(2026-01-01 11:00 UTC),
        finished: datetime!(2026-01-01 11:05 UTC),
    }
}

#[test]
fn provenance_has_the_slsa_shape() {
    let st = Statement::slsa(provenance_inputs());
    let json: serde_json::Value = serde_json::from_slice(&st.to_payload()).unwrap();
    assert_eq!(json["_type"], STATEMENT_TYPE);
    assert_eq!(json["predicateType"], PREDICATE_TYPE);
    assert_eq!(
        json["subject"][0]["digest"]["sha256"],
        Digest::of(ARTIFACT_BYTES).hex()
    );
    let def = &json["predicate"]["buildDefinition"];
    assert_eq!(
        def["resolvedDependencies"][0]["uri"],
        "git+https://example.com/hello"
    );
    assert_eq!(
        def["externalParameters"]["action"],
        format!("{:#}", Digest::of(b"action"))
    );
    let meta = &json["predicate"]["runDetails"]["metadata"];
    assert_eq!(meta["startedOn"], "2026-01-01T11:00:00Z");
    assert_eq!(Statement::from_payload(&st.to_payload()).unwrap(), st);
}

#[test]
fn provenance_with_wrong_type_is_refused() {
    let mut st = Statement::slsa(provenance_inputs());
    st.predicate_type = "https://slsa.dev/provenance/v0.2".into();
    let err = Statement::from_payload(&st.to_payload()).unwrap_err();
    assert!(matches!(
        err,
        DocumentError::WrongConstant {
            field: "predicateType",
            ..
        }
    ));
}
