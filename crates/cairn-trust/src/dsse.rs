//! DSSE v1 envelopes: the one signed container for every cairn document.
//!
//! Follows the [DSSE v1 protocol](https://github.com/secure-systems-lab/dsse/blob/master/protocol.md)
//! and [envelope](https://github.com/secure-systems-lab/dsse/blob/master/envelope.md)
//! exactly, so in-toto and sigstore tooling can read what cairn writes:
//!
//! ```json
//! {"payloadType": "...", "payload": "<base64>", "signatures": [{"keyid": "...", "sig": "<base64>"}]}
//! ```
//!
//! Signatures cover the pre-authentication encoding [`pae`] of the payload
//! type and the raw payload bytes, never the JSON around them, so the
//! envelope's serialization does not matter to verification. `payload` and
//! `sig` use standard base64 with padding; decoding is strict (no trailing
//! bits) so one envelope has one spelling. `keyid` is an unauthenticated
//! hint: [`Envelope::check`] looks the key up by it and then verifies with
//! the full public key.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cairn_digest::Digest;

use crate::key::{KeyId, KeySet, SigningKey};

/// A DSSE envelope.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The media type of the payload; authenticated by the signatures.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The signed bytes (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub payload: Vec<u8>,
    /// The signatures, in the order they were added.
    pub signatures: Vec<Signature>,
}

/// One signature in an envelope.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// The signer's key id (a hint, not authenticated); may be empty.
    #[serde(default)]
    pub keyid: String,
    /// The signature bytes (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub sig: Vec<u8>,
}

/// Why bytes are not a DSSE envelope.
#[derive(Debug, thiserror::Error)]
#[error("not a DSSE envelope: {0}")]
pub struct EnvelopeError(#[source] serde_json::Error);

/// What [`Envelope::check`] found, signature by signature.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureCheck {
    /// Distinct known keys with at least one valid signature.
    pub valid: BTreeSet<KeyId>,
    /// Known keys with a signature that does not verify.
    pub invalid: BTreeSet<KeyId>,
    /// Key ids (as written in the envelope) that are not in the key set.
    pub unknown: Vec<String>,
}

/// The DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII
/// decimal bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let head = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    );
    let mut out = Vec::with_capacity(head.len() + payload.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// An unsigned envelope around `payload`.
    pub fn new(payload_type: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            payload_type: payload_type.into(),
            payload,
            signatures: Vec::new(),
        }
    }

    /// Adds `key`'s signature (with its key id as `keyid`).
    pub fn sign(&mut self, key: &SigningKey) {
        let sig = key.sign(&pae(&self.payload_type, &self.payload));
        self.signatures.push(Signature {
            keyid: key.key_id().to_string(),
            sig: sig.to_vec(),
        });
    }

    /// The digest of the payload bytes: what channel statements and
    /// `previous` links name (stable when signatures are added).
    pub fn payload_digest(&self) -> Digest {
        Digest::of(&self.payload)
    }

    /// Checks every signature against `keys`, looked up by `keyid`.
    ///
    /// A key that signed twice counts once in `valid`: thresholds count
    /// distinct keys, never signatures.
    pub fn check(&self, keys: &KeySet) -> SignatureCheck {
        let message = pae(&self.payload_type, &self.payload);
        let mut check = SignatureCheck::default();
        for sig in &self.signatures {
            let known = sig.keyid.parse::<KeyId>().ok().and_then(|id| {
                let key = keys.get(&id)?;
                Some((id, key))
            });
            match known {
                Some((id, key)) if key.verify(&message, &sig.sig) => {
                    check.valid.insert(id);
                }
                Some((id, _)) => {
                    check.invalid.insert(id);
                }
                None => check.unknown.push(sig.keyid.clone()),
            }
        }
        check
    }

    /// The compact JSON form.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing strings, byte vectors and a Vec cannot fail.
        serde_json::to_vec(self).expect("envelope serializes")
    }

    /// Parses the JSON form.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        serde_json::from_slice(bytes).map_err(EnvelopeError)
    }
}

mod base64_bytes {
    //! Standard base64 (with padding) for byte fields, strict on decode.
    use super::*;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{key_a, key_b, KEY_A_ID};

    const PAYLOAD_TYPE: &str = "http://example.com/HelloWorld";
    const PAYLOAD: &[u8] = b"hello world";

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE protocol document's test vector.
        let expected = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world";
        assert_eq!(pae(PAYLOAD_TYPE, PAYLOAD), expected);
    }

    #[test]
    fn json_form_uses_dsse_field_names_and_base64() {
        let mut env = Envelope::new(PAYLOAD_TYPE, PAYLOAD.to_vec());
        env.sign(&key_a());
        let json: serde_json::Value = serde_json::from_slice(&env.to_json()).unwrap();
        assert_eq!(json["payloadType"], PAYLOAD_TYPE);
        assert_eq!(json["payload"], "aGVsbG8gd29ybGQ=");
        assert_eq!(json["signatures"][0]["keyid"], KEY_A_ID);
        assert_eq!(Envelope::from_json(&env.to_json()).unwrap(), env);
    }

    #[test]
    fn check_counts_distinct_keys() {
        let mut env = Envelope::new(PAYLOAD_TYPE, PAYLOAD.to_vec());
        env.sign(&key_a());
        env.sign(&key_a());
        env.sign(&key_b());
        let keys: KeySet = [key_a().public_key()].into_iter().collect();
        let check = env.check(&keys);
        assert_eq!(check.valid.len(), 1);
        assert_eq!(check.unknown, vec![key_b().key_id().to_string()]);
    }

    #[test]
    fn check_reports_bad_signature_after_tampering() {
        let mut env = Envelope::new(PAYLOAD_TYPE, PAYLOAD.to_vec());
        env.sign(&key_a());
        env.payload_type.push('x');
        let keys: KeySet = [key_a().public_key()].into_iter().collect();
        let check = env.check(&keys);
        assert!(check.valid.is_empty());
        assert!(check.invalid.contains(&key_a().key_id()));
    }

    #[test]
    fn non_canonical_base64_is_refused() {
        // "aGk=" is "hi"; "aGl=" has non-zero trailing bits.
        let text = br#"{"payloadType":"t","payload":"aGl=","signatures":[]}"#;
        assert!(Envelope::from_json(text).is_err());
    }
}
