//! Content digests: the SHA-256 of some bytes together with their length.
//!
//! Everything cairn stores is named by a [`Digest`]. The text form is
//! `sha256:<64 lowercase hex>`; the size travels beside it wherever a format
//! has room (REAPI messages do), and is always known in memory so that a
//! reader can refuse a blob that is longer or shorter than promised before
//! hashing a single byte of it.
//!
//! This crate is pure: it hashes bytes handed to it and never touches a file.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

mod hashing;

pub use hashing::{Hasher, HashingReader, HashingWriter};

/// The prefix of a digest's text form.
pub const PREFIX: &str = "sha256:";

/// A SHA-256 hash and the number of bytes it covers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hash: [u8; 32],
    size: u64,
}

/// Why a string or a pair of fields is not a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseDigestError {
    /// The text does not start with `sha256:`.
    #[error("digest {0:?} does not start with \"sha256:\"")]
    MissingPrefix(String),
    /// The hex part is not 64 lowercase hex characters.
    #[error("digest {0:?} is not 64 lowercase hex characters after \"sha256:\"")]
    BadHex(String),
    /// A size that cannot be a byte count (negative, in REAPI's signed field).
    #[error("digest size {0} is negative")]
    NegativeSize(i64),
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            hash: Sha256::digest(bytes).into(),
            size: bytes.len() as u64,
        }
    }

    /// The digest of zero bytes.
    pub fn empty() -> Self {
        Self::of(&[])
    }

    /// Builds a digest from a raw hash and a size.
    pub const fn from_parts(hash: [u8; 32], size: u64) -> Self {
        Self { hash, size }
    }

    /// Parses the 64-hex-character hash alone, as in REAPI's `hash` field or
    /// Bazel's `/cas/<hex>` paths, with the size given separately.
    pub fn from_hex(hex_hash: &str, size: u64) -> Result<Self, ParseDigestError> {
        let hash = parse_hex(hex_hash).ok_or_else(|| ParseDigestError::BadHex(hex_hash.into()))?;
        Ok(Self { hash, size })
    }

    /// Parses REAPI's `(hash, size_bytes)` pair.
    pub fn from_reapi(hex_hash: &str, size_bytes: i64) -> Result<Self, ParseDigestError> {
        let size =
            u64::try_from(size_bytes).map_err(|_| ParseDigestError::NegativeSize(size_bytes))?;
        Self::from_hex(hex_hash, size)
    }

    /// The 32 raw bytes of the hash.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// The hash as 64 lowercase hex characters (no prefix).
    pub fn hex(&self) -> String {
        encode_hex(&self.hash)
    }

    /// The hash as 64 lowercase hex characters written into `out`, for a
    /// caller that needs it many times without allocating.
    pub fn hex_in<'a>(&self, out: &'a mut [u8; 64]) -> &'a str {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in self.hash.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        std::str::from_utf8(out).expect("hex digits are ASCII")
    }

    /// The number of bytes the digest covers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether `bytes` are exactly the content this digest names.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() as u64 == self.size && Sha256::digest(bytes).as_slice() == self.hash
    }
}

/// Lowercase hex of a hash. Hand-rolled because it is on the hot path of
/// every tree encode and stat-cache save (the generic encoder goes through
/// a character iterator).
fn encode_hex(hash: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(64);
    for b in hash {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
    String::from_utf8(out).expect("hex digits are ASCII")
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    // Only lowercase is canonical: two spellings of one digest would make two
    // cache keys and two file names for the same content.
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(text.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(hash)
}

impl fmt::Display for Digest {
    /// `sha256:<hex>`; the alternate form `{:#}` appends `/<size>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())?;
        if f.alternate() {
            write!(f, "/{}", self.size)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}/{}", &self.hex()[..12], self.size)
    }
}

/// A digest's text form with its size: `sha256:<hex>/<size>` or, where the
/// size is unknown to the writer, `sha256:<hex>`.
///
/// Parsing the bare form yields a [`DigestRef`]: a hash whose size must be
/// looked up (in the store) before the content can be verified.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DigestRef {
    /// The 32 bytes of the hash.
    pub hash: [u8; 32],
    /// The size, when the text carried one.
    pub size: Option<u64>,
}

impl DigestRef {
    /// The full digest, given the size if the text did not carry one.
    pub fn with_size(self, size: u64) -> Digest {
        Digest::from_parts(self.hash, self.size.unwrap_or(size))
    }

    /// The hash as 64 lowercase hex characters.
    pub fn hex(&self) -> String {
        encode_hex(&self.hash)
    }
}

impl FromStr for DigestRef {
    type Err = ParseDigestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| ParseDigestError::MissingPrefix(text.into()))?;
        let (hex_hash, size) = match rest.split_once('/') {
            Some((h, s)) => {
                let size = s
                    .parse()
                    .map_err(|_| ParseDigestError::BadHex(text.into()))?;
                (h, Some(size))
            }
            None => (rest, None),
        };
        let hash = parse_hex(hex_hash).ok_or_else(|| ParseDigestError::BadHex(text.into()))?;
        Ok(Self { hash, size })
    }
}

impl fmt::Display for DigestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())?;
        if let Some(size) = self.size {
            write!(f, "/{size}")?;
        }
        Ok(())
    }
}

impl From<Digest> for DigestRef {
    fn from(d: Digest) -> Self {
        Self {
            hash: d.hash,
            size: Some(d.size),
        }
    }
}

/// Serialized as `{"hash": "sha256:<hex>", "size": N}` so that JSON
/// documents carry the size without a second text format.
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Digest", 2)?;
        st.serialize_field("hash", &self.to_string())?;
        st.serialize_field("size", &self.size)?;
        st.end()
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            hash: String,
            size: u64,
        }
        let wire = Wire::deserialize(d)?;
        let r: DigestRef = wire.hash.parse().map_err(serde::de::Error::custom)?;
        if r.size.is_some_and(|s| s != wire.size) {
            return Err(serde::de::Error::custom(
                "digest size disagrees with its hash text",
            ));
        }
        Ok(r.with_size(wire.size))
    }
}

#[cfg(test)]
mod tests;
