//! Durations (`"10m"`, `"1h 30m"`) and byte sizes (`"2GiB"`, `1048576`).
//!
//! Both are written as text in `cairn.toml` because bare numbers hide their
//! unit. Parsing happens inside deserialization so that a bad value is
//! reported at its own line and column.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// A duration written the `humantime` way: `"500ms"`, `"10m"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub Duration);

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map(Self).map_err(de::Error::custom)
    }
}

/// Parses a duration such as `"10m"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("invalid duration {text:?} ({e}); expected e.g. \"30s\", \"10m\", \"1h\"")
    })
}

/// A number of bytes: an integer, or text with a unit (`B`, `KiB`, `MiB`,
/// `GiB`, `TiB`, or the decimal `KB`, `MB`, `GB`, `TB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub u64);

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ByteSizeVisitor)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte size such as \"2GiB\" or a number of bytes")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        u64::try_from(v)
            .map(ByteSize)
            .map_err(|_| E::custom(format!("byte size {v} is negative")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        parse_bytes(v).map(ByteSize).map_err(E::custom)
    }
}

const UNITS: [(&str, u64); 9] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

/// Parses a byte size such as `"2GiB"`, `"512 MiB"` or `"100"`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid byte size {text:?}; expected a number with a unit B, KiB, MiB, GiB, TiB, KB, MB, GB or TB")
    };
    let trimmed = text.trim();
    let (number, factor) = UNITS
        .iter()
        .find_map(|(unit, factor)| trimmed.strip_suffix(unit).map(|n| (n.trim_end(), *factor)))
        .unwrap_or((trimmed, 1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    n.checked_mul(factor).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_with_units() {
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("3KB"), Ok(3000));
        assert_eq!(parse_bytes("17"), Ok(17));
        assert!(parse_bytes("2 GiBs").is_err());
        assert!(parse_bytes("-1B").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("ten").unwrap_err().contains("\"ten\""));
    }
}
