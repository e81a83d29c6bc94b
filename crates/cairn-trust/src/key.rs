//! Ed25519 keys, their ids, and their one-line text forms.
//!
//! A [`KeyId`] is derived from the public key alone, so anyone holding the
//! public key computes the same id and nobody can claim an id for a key they
//! do not have: `ed25519:` followed by the first 16 bytes of
//! SHA-256(raw 32-byte public key) as 32 lowercase hex characters. Hex (not
//! base64) because ids are read aloud, compared by eye in trust policies and
//! used in file names; 128 bits is far beyond accidental collision, and an
//! id is only ever a *lookup hint*: signatures are always checked against
//! the full public key.
//!
//! Keys travel as one line of text so they can be pasted into a terminal,
//! a chat or a config file:
//!
//! * public: `cairn-ed25519-pub:<name>:<standard base64 of the 32-byte key>`
//! * secret: `cairn-ed25519-secret:<name>:<standard base64 of the 32-byte seed>`
//!
//! [`SigningKey`] never prints its secret: `Debug` shows only the key id.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use sha2::{Digest as _, Sha256};

/// Prefix of a key id's text form.
pub const KEY_ID_PREFIX: &str = "ed25519:";
/// Prefix of a public key's one-line export form.
pub const PUBLIC_PREFIX: &str = "cairn-ed25519-pub:";
/// Prefix of a secret key's one-line form (as stored in a key file).
pub const SECRET_PREFIX: &str = "cairn-ed25519-secret:";

/// Why a key, key id or key line could not be read or made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The key id is not `ed25519:` + 32 lowercase hex characters.
    #[error("key id {0:?} is not \"ed25519:\" followed by 32 lowercase hex characters")]
    BadKeyId(String),
    /// The line does not start with the expected prefix.
    #[error("key line does not start with {expected:?}")]
    BadPrefix {
        /// The prefix that was expected.
        expected: &'static str,
    },
    /// The line has no `:` between the name and the key material.
    #[error("key line has no \":\" between the key name and the base64 key")]
    MissingName,
    /// The key name is empty or has characters outside `[A-Za-z0-9._-]`.
    #[error("key name {0:?} must be non-empty and use only A-Z a-z 0-9 . _ -")]
    BadName(String),
    /// The key material is not base64 of exactly 32 bytes.
    #[error("key material is not standard base64 of exactly 32 bytes")]
    BadMaterial,
    /// The bytes are not a valid Ed25519 public key.
    #[error("bytes are not a valid Ed25519 public key")]
    InvalidPublicKey,
    /// There is no key line at all.
    #[error("no key line (the text is empty)")]
    Empty,
    /// A key file holds more than its one line.
    #[error("unexpected extra line: a key file holds exactly one key line")]
    ExtraLine,
    /// The operating system could not provide randomness.
    #[error("could not get random bytes from the operating system: {0}")]
    Random(String),
}

/// The id of a public key: `ed25519:<32 lowercase hex>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// The id of `key`.
    pub fn of(key: &PublicKey) -> Self {
        let hash = Sha256::digest(key.0.as_bytes());
        Self(format!("{KEY_ID_PREFIX}{}", hex::encode(&hash[..16])))
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        let ok = text.strip_prefix(KEY_ID_PREFIX).is_some_and(|hex| {
            hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(KeyError::BadKeyId(text.to_owned()))
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// The key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| KeyError::InvalidPublicKey)
    }

    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// This key's id.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(self)
    }

    /// Whether `sig` is a valid signature of `message` by this key.
    ///
    /// Uses strict verification (rejects non-canonical and small-order
    /// encodings), so one message has one valid signature shape per key.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.0.verify_strict(message, &sig).is_ok()
    }

    /// The one-line export form `cairn-ed25519-pub:<name>:<base64>`.
    pub fn to_line(&self, name: &str) -> Result<String, KeyError> {
        validate_key_name(name)?;
        Ok(format!(
            "{PUBLIC_PREFIX}{name}:{}",
            STANDARD.encode(self.to_bytes())
        ))
    }

    /// Parses the one-line export form, returning the name and the key.
    pub fn from_line(line: &str) -> Result<(String, Self), KeyError> {
        let (name, bytes) = parse_line(line, PUBLIC_PREFIX)?;
        Ok((name, Self::from_bytes(&bytes)?))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

/// An Ed25519 secret key. Its `Debug` form shows only the key id, and the
/// underlying bytes are zeroed when it is dropped.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        let key = Self::from_seed(&seed);
        seed.fill(0);
        Ok(key)
    }

    /// The key whose 32-byte seed is `seed` (deterministic; for tests and
    /// for reading key files).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The id of the matching public key.
    pub fn key_id(&self) -> KeyId {
        self.public_key().key_id()
    }

    /// The 64-byte Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// The one-line secret form `cairn-ed25519-secret:<name>:<base64 seed>`,
    /// for writing to a private key file.
    pub fn to_secret_line(&self, name: &str) -> Result<String, KeyError> {
        validate_key_name(name)?;
        Ok(format!(
            "{SECRET_PREFIX}{name}:{}",
            STANDARD.encode(self.0.to_bytes())
        ))
    }

    /// Parses the one-line secret form, returning the name and the key.
    pub fn from_secret_line(line: &str) -> Result<(String, Self), KeyError> {
        let (name, mut seed) = parse_line(line, SECRET_PREFIX)?;
        let key = Self::from_seed(&seed);
        seed.fill(0);
        Ok((name, key))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, secret redacted)", self.key_id())
    }
}

/// Checks a key name: non-empty, only `[A-Za-z0-9._-]`, not `.` or `..`
/// (names become file names in the keyring).
pub fn validate_key_name(name: &str) -> Result<(), KeyError> {
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || !chars_ok || name == "." || name == ".." {
        return Err(KeyError::BadName(name.to_owned()));
    }
    Ok(())
}

fn parse_line(line: &str, prefix: &'static str) -> Result<(String, [u8; 32]), KeyError> {
    let rest = line
        .trim_end_matches(['\n', '\r'])
        .strip_prefix(prefix)
        .ok_or(KeyError::BadPrefix { expected: prefix })?;
    let (name, material) = rest.split_once(':').ok_or(KeyError::MissingName)?;
    validate_key_name(name)?;
    let bytes = STANDARD
        .decode(material)
        .map_err(|_| KeyError::BadMaterial)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadMaterial)?;
    Ok((name.to_owned(), bytes))
}

/// A set of public keys, looked up by id: the keys a verifier has.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: BTreeMap<KeyId, PublicKey>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key` (a key already present is kept once).
    pub fn insert(&mut self, key: PublicKey) {
        self.keys.insert(key.key_id(), key);
    }

    /// The key with id `id`, if present.
    pub fn get(&self, id: &KeyId) -> Option<&PublicKey> {
        self.keys.get(id)
    }

    /// The number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl FromIterator<PublicKey> for KeySet {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(iter: I) -> Self {
        let mut set = Self::new();
        iter.into_iter().for_each(|k| set.insert(k));
        set
    }
}

#[cfg(test)]
mod tests;
