use super::*;
use proptest::prelude::*;

/// `printf hello | sha256sum`
const HELLO_HEX: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

#[test]
fn digest_of_known_bytes() {
    let d = Digest::of(b"hello");
    assert_eq!(d.hex(), HELLO_HEX);
    assert_eq!(d.size(), 5);
    assert_eq!(d.to_string(), format!("sha256:{HELLO_HEX}"));
    assert_eq!(format!("{d:#}"), format!("sha256:{HELLO_HEX}/5"));
}

#[test]
fn parse_round_trips_with_and_without_size() {
    let d = Digest::of(b"hello");
    let bare: DigestRef = d.to_string().parse().unwrap();
    assert_eq!(bare.size, None);
    assert_eq!(bare.with_size(5), d);
    let sized: DigestRef = format!("{d:#}").parse().unwrap();
    assert_eq!(sized, DigestRef::from(d));
}

#[test]
fn malformed_digests_are_refused() {
    for bad in [
        "",
        "sha256:",
        "md5:abc",
        HELLO_HEX,
        &format!("sha256:{}", &HELLO_HEX[..63]),
        &format!("sha256:{HELLO_HEX}0"),
        &format!("sha256:{}", HELLO_HEX.to_uppercase()),
        &format!("sha256:{}g", &HELLO_HEX[..63]),
        &format!("sha256:{HELLO_HEX}/x"),
        &format!("sha256:{HELLO_HEX}/-1"),
    ] {
        assert!(bad.parse::<DigestRef>().is_err(), "{bad:?} parsed");
    }
    assert_eq!(
        Digest::from_reapi(HELLO_HEX, -1),
        Err(ParseDigestError::NegativeSize(-1))
    );
}

#[test]
fn streaming_hash_equals_one_shot() {
    let mut h = Hasher::new();
    h.update(b"hel");
    h.update(b"lo");
    assert_eq!(h.finish(), Digest::of(b"hello"));
}

#[test]
fn serde_json_carries_hash_and_size() {
    let d = Digest::of(b"hello");
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(json, format!(r#"{{"hash":"sha256:{HELLO_HEX}","size":5}}"#));
    assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    let lying = format!(r#"{{"hash":"sha256:{HELLO_HEX}/6","size":5}}"#);
    assert!(serde_json::from_str::<Digest>(&lying).is_err());
}

proptest! {
    #[test]
    fn text_form_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let d = Digest::of(&bytes);
        let r: DigestRef = format!("{d:#}").parse().unwrap();
        prop_assert_eq!(r.with_size(0), d);
        prop_assert!(d.matches(&bytes));
    }

    #[test]
    fn hex_is_lowercase_two_digits_per_byte(hash in any::<[u8; 32]>()) {
        let d = Digest::from_parts(hash, 1);
        let expected: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        prop_assert_eq!(d.hex(), expected.clone());
        prop_assert_eq!(Digest::from_hex(&expected, 1).unwrap(), d);
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in ".*") {
        let _ = text.parse::<DigestRef>();
    }
}

#[test]
fn hex_in_a_buffer_is_hex() {
    let d = Digest::of(b"hello");
    let mut buf = [0u8; 64];
    assert_eq!(d.hex_in(&mut buf), d.hex());
}
