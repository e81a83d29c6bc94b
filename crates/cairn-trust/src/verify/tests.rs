use proptest::prelude::*;

use super::*;
use crate::fixtures::*;

fn verify_prod(
    env: &Envelope,
    threshold: usize,
    last: Option<u64>,
) -> Result<VerifiedStatement, Refusal> {
    verify_channel(env, &policy(threshold), &all_keys(), last, NOW)
}

fn release_digest() -> Digest {
    release().to_envelope().payload_digest()
}

#[test]
fn signed_statement_is_accepted() {
    let env = signed(&statement(), &[key_a()]);
    let ok = verify_prod(&env, 1, Some(SEQUENCE - 1)).unwrap();
    assert_eq!(ok.statement, statement());
    assert_eq!(ok.digest, env.payload_digest());
    assert_eq!(
        ok.signers.into_iter().collect::<Vec<_>>(),
        vec![key_a().key_id()]
    );
}

#[test]
fn tampered_channel_payload_is_refused() {
    let mut env = signed(&statement(), &[key_a()]);
    let mut tampered = statement();
    tampered.sequence += 100;
    env.payload = tampered.to_payload();
    let err = verify_prod(&env, 1, None).unwrap_err();
    assert!(matches!(err, Refusal::BadSignature(id) if id.as_str() == KEY_A_ID));
}

#[test]
fn key_not_in_policy_is_refused() {
    let env = signed(&statement(), &[key_c()]);
    let err = verify_prod(&env, 1, None).unwrap_err();
    assert!(
        matches!(&err, Refusal::UnknownKey(id) if id == KEY_C_ID),
        "{err}"
    );
}

#[test]
fn policy_key_without_public_key_is_refused() {
    let env = signed(&statement(), &[key_b()]);
    let keys: KeySet = [key_a().public_key()].into_iter().collect();
    let err = verify_channel(&env, &policy(1), &keys, None, NOW).unwrap_err();
    assert!(matches!(err, Refusal::MissingPublicKey(id) if id.as_str() == KEY_B_ID));
}

#[test]
fn replayed_statement_is_refused() {
    let env = signed(&statement(), &[key_a()]);
    for last in [SEQUENCE, SEQUENCE + 1] {
        let err = verify_prod(&env, 1, Some(last)).unwrap_err();
        assert!(matches!(err, Refusal::StaleSequence { got: SEQUENCE, last: l } if l == last));
    }
}

#[test]
fn expired_statement_is_refused() {
    let env = signed(&statement(), &[key_a()]);
    for now in [EXPIRES, EXPIRES + time::Duration::seconds(1)] {
        let err = verify_channel(&env, &policy(1), &all_keys(), None, now).unwrap_err();
        assert!(
            matches!(err, Refusal::Expired { expires, .. } if expires == EXPIRES),
            "{err}"
        );
    }
    let text = verify_channel(&env, &policy(1), &all_keys(), None, EXPIRES)
        .unwrap_err()
        .to_string();
    assert_eq!(
        text,
        "statement expired at 2026-01-08T12:00:00Z, it is now 2026-01-08T12:00:00Z"
    );
}

#[test]
fn other_service_or_channel_is_refused() {
    let mut other = statement();
    other.service = "other".into();
    let err = verify_prod(&signed(&other, &[key_a()]), 1, None).unwrap_err();
    assert!(matches!(err, Refusal::WrongService { got, .. } if got == "other"));
    let mut other = statement();
    other.channel = "staging".into();
    let err = verify_prod(&signed(&other, &[key_a()]), 1, None).unwrap_err();
    assert!(matches!(err, Refusal::WrongChannel { got, .. } if got == "staging"));
}

#[test]
fn threshold_two_with_the_same_key_twice_is_refused() {
    let env = signed(&statement(), &[key_a(), key_a()]);
    let err = verify_prod(&env, 2, None).unwrap_err();
    assert!(
        matches!(err, Refusal::BelowThreshold { have: 1, need: 2 }),
        "{err}"
    );
}

#[test]
fn threshold_two_with_one_trusted_and_one_unknown_key_is_refused() {
    let env = signed(&statement(), &[key_a(), key_c()]);
    let err = verify_prod(&env, 2, None).unwrap_err();
    assert!(
        matches!(err, Refusal::BelowThreshold { have: 1, need: 2 }),
        "{err}"
    );
}

#[test]
fn threshold_two_with_two_distinct_keys_is_accepted() {
    let env = signed(&statement(), &[key_a(), key_b()]);
    let ok = verify_prod(&env, 2, None).unwrap();
    assert_eq!(ok.signers.len(), 2);
}

#[test]
fn wrong_payload_type_is_refused() {
    let env = signed(&release(), &[key_a()]);
    let err = verify_prod(&env, 1, None).unwrap_err();
    assert!(matches!(
        err,
        Refusal::WrongPayloadType {
            expected: CHANNEL_PAYLOAD_TYPE,
            ..
        }
    ));
}

#[test]
fn signed_garbage_is_malformed() {
    let mut env = Envelope::new(CHANNEL_PAYLOAD_TYPE, b"{\"service\":1}".to_vec());
    env.sign(&key_a());
    let err = verify_prod(&env, 1, None).unwrap_err();
    assert!(matches!(err, Refusal::MalformedPayload(_)), "{err}");
}

use crate::document::CHANNEL_PAYLOAD_TYPE;

#[test]
fn signed_release_is_accepted() {
    let env = signed(&release(), &[key_a()]);
    assert_eq!(
        verify_release(&env, &all_keys(), &release_digest()).unwrap(),
        release()
    );
}

#[test]
fn tampered_release_payload_is_refused() {
    let mut env = signed(&release(), &[key_a()]);
    let mut tampered = release();
    tampered.artifact = Digest::of(b"malware");
    env.payload = tampered.to_payload();
    let err = verify_release(&env, &all_keys(), &release_digest()).unwrap_err();
    assert!(
        matches!(err, Refusal::ReleaseDigestMismatch { .. }),
        "{err}"
    );
    // Even when asked for the tampered digest, the signature gives it away.
    let err = verify_release(&env, &all_keys(), &env.payload_digest()).unwrap_err();
    assert!(
        matches!(&err, Refusal::BadSignature(id) if id.as_str() == KEY_A_ID),
        "{err}"
    );
}

#[test]
fn release_by_untrusted_key_is_refused() {
    let env = signed(&release(), &[key_c()]);
    let trusted: KeySet = [key_a().public_key()].into_iter().collect();
    let err = verify_release(&env, &trusted, &release_digest()).unwrap_err();
    assert!(matches!(&err, Refusal::ReleaseUntrusted { signers } if signers == &[KEY_C_ID]));
    assert!(
        err.to_string()
            .ends_with(&format!("(signed by: {KEY_C_ID})")),
        "{err}"
    );
    let unsigned = release().to_envelope();
    let err = verify_release(&unsigned, &trusted, &release_digest()).unwrap_err();
    assert!(err.to_string().ends_with("(signed by: nobody)"), "{err}");
}

/// The fixture statement, signed by A, serialized: the bytes the
/// proptest mutates.
fn serialized_statement() -> Vec<u8> {
    signed(&statement(), &[key_a()]).to_json()
}

fn refused_after_change(bytes: &[u8]) -> bool {
    let verdict = Envelope::from_json(bytes).map(|env| verify_prod(&env, 1, None));
    !matches!(verdict, Ok(Ok(_)))
}

#[test]
fn flipping_any_bit_of_any_byte_is_refused() {
    let original = serialized_statement();
    assert!(!refused_after_change(&original));
    for i in 0..original.len() {
        for bit in 0..8 {
            let mut bytes = original.clone();
            bytes[i] ^= 1 << bit;
            assert!(
                refused_after_change(&bytes),
                "accepted after flipping bit {bit} of byte {i}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_single_byte_change_is_refused(index in any::<prop::sample::Index>(), new in any::<u8>()) {
        let mut bytes = serialized_statement();
        let i = index.index(bytes.len());
        prop_assume!(bytes[i] != new);
        bytes[i] = new;
        prop_assert!(refused_after_change(&bytes), "accepted after changing byte {}", i);
    }
}

fn image_attestation(service: &str, subject: &[u8]) -> crate::Statement {
    use crate::document::{Material, ProvenanceInputs};
    crate::Statement::slsa(ProvenanceInputs {
        subject_name: "127.0.0.1:5000/team/hello".into(),
        artifact: Digest::of(subject),
        materials: vec![Material {
            name: "release".into(),
            digest: release_digest(),
            uri: None,
        }],
        builder_id: "urn:test".into(),
        build_type: "urn:test".into(),
        action: Digest::of(b"action"),
        parameters: [("service".to_string(), serde_json::Value::from(service))]
            .into_iter()
            .collect(),
        started: CREATED,
        finished: CREATED,
    })
}

#[test]
fn attestation_about_the_image_is_accepted() {
    let env = signed(&image_attestation(SERVICE, b"manifest"), &[key_a()]);
    let st = verify_attestation(&env, &policy(1), &all_keys(), &Digest::of(b"manifest")).unwrap();
    assert_eq!(st.subject[0].digest.sha256, Digest::of(b"manifest").hex());
}

#[test]
fn attestation_refusals() {
    let subject = Digest::of(b"manifest");
    let other = signed(&image_attestation(SERVICE, b"other image"), &[key_a()]);
    let err = verify_attestation(&other, &policy(1), &all_keys(), &subject).unwrap_err();
    assert!(matches!(err, Refusal::WrongSubject { .. }), "{err}");
    let service = signed(&image_attestation("other", b"manifest"), &[key_a()]);
    let err = verify_attestation(&service, &policy(1), &all_keys(), &subject).unwrap_err();
    assert!(matches!(err, Refusal::WrongService { .. }), "{err}");
    let untrusted = signed(&image_attestation(SERVICE, b"manifest"), &[key_c()]);
    let err = verify_attestation(&untrusted, &policy(1), &all_keys(), &subject).unwrap_err();
    assert!(matches!(err, Refusal::UnknownKey(_)), "{err}");
    let one_of_two = signed(&image_attestation(SERVICE, b"manifest"), &[key_a()]);
    let err = verify_attestation(&one_of_two, &policy(2), &all_keys(), &subject).unwrap_err();
    assert!(
        matches!(err, Refusal::BelowThreshold { have: 1, need: 2 }),
        "{err}"
    );
    let channel = signed(&statement(), &[key_a()]);
    let err = verify_attestation(&channel, &policy(1), &all_keys(), &subject).unwrap_err();
    assert!(matches!(err, Refusal::WrongPayloadType { .. }), "{err}");
}
