use super::*;
use crate::fixtures::{key_a, KEY_A_ID, KEY_A_SEED};

#[test]
fn key_id_is_derived_from_the_public_key() {
    assert_eq!(key_a().key_id().as_str(), KEY_A_ID);
    assert_eq!(KeyId::of(&key_a().public_key()).to_string(), KEY_A_ID);
}

#[test]
fn key_id_parse_is_strict() {
    assert_eq!(KEY_A_ID.parse::<KeyId>().unwrap(), key_a().key_id());
    for bad in [
        "",
        "ed25519:",
        "ed25519:ABCD",
        "rsa:34750f98bd59fcfc946da45aaabe933b",
    ] {
        assert_eq!(bad.parse::<KeyId>(), Err(KeyError::BadKeyId(bad.into())));
    }
    let upper = KEY_A_ID.to_uppercase().replace("ED25519", "ed25519");
    assert!(upper.parse::<KeyId>().is_err());
}

#[test]
fn debug_never_shows_the_secret() {
    let text = format!("{:?}", key_a());
    assert!(
        text.contains(KEY_A_ID) && text.contains("redacted"),
        "{text}"
    );
    let secret_b64 = STANDARD.encode(KEY_A_SEED);
    assert!(!text.contains(&secret_b64));
}

#[test]
fn public_line_round_trips() {
    let line = key_a().public_key().to_line("alice").unwrap();
    assert!(line.starts_with("cairn-ed25519-pub:alice:"), "{line}");
    let (name, key) = PublicKey::from_line(&format!("{line}\n")).unwrap();
    assert_eq!((name.as_str(), key), ("alice", key_a().public_key()));
}

#[test]
fn secret_line_round_trips() {
    let line = key_a().to_secret_line("alice").unwrap();
    let (name, key) = SigningKey::from_secret_line(&line).unwrap();
    assert_eq!((name.as_str(), key.key_id()), ("alice", key_a().key_id()));
}

#[test]
fn bad_lines_have_clear_errors() {
    let b64 = STANDARD.encode([7u8; 32]);
    let cases = [
        (
            format!("ssh-ed25519 {b64}"),
            KeyError::BadPrefix {
                expected: PUBLIC_PREFIX,
            },
        ),
        (format!("{PUBLIC_PREFIX}{b64}"), KeyError::MissingName),
        (
            format!("{PUBLIC_PREFIX}a b:{b64}"),
            KeyError::BadName("a b".into()),
        ),
        (
            format!("{PUBLIC_PREFIX}a:{}", STANDARD.encode([7u8; 31])),
            KeyError::BadMaterial,
        ),
        (
            format!("{PUBLIC_PREFIX}a:not base64!"),
            KeyError::BadMaterial,
        ),
    ];
    for (line, want) in cases {
        assert_eq!(PublicKey::from_line(&line).unwrap_err(), want, "{line}");
    }
    let secret = key_a().to_secret_line("a").unwrap();
    assert!(matches!(
        PublicKey::from_line(&secret),
        Err(KeyError::BadPrefix { .. })
    ));
}

#[test]
fn generated_keys_differ_and_sign() {
    let (a, b) = (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    );
    assert_ne!(a.key_id(), b.key_id());
    let sig = a.sign(b"msg");
    assert!(a.public_key().verify(b"msg", &sig));
    assert!(!b.public_key().verify(b"msg", &sig));
    assert!(!a.public_key().verify(b"msh", &sig));
}

#[test]
fn key_names() {
    assert!(validate_key_name("My_key-1.0").is_ok());
    for bad in ["", ".", "..", "a/b", "a:b", "a b"] {
        assert!(validate_key_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn key_set_dedups() {
    let set: KeySet = [key_a().public_key(), key_a().public_key()]
        .into_iter()
        .collect();
    assert_eq!(set.len(), 1);
    assert!(set.get(&key_a().key_id()).is_some());
}
