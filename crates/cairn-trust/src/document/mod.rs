//! The signed payloads: releases, channel statements and provenance.
//!
//! Each is a JSON document with a fixed DSSE `payloadType`
//! ([`Document::PAYLOAD_TYPE`]). Parsing uses `deny_unknown_fields`: a field
//! this version does not understand could change a document's meaning, so
//! it is refused rather than ignored. Service and channel names are
//! validated on parse ([`validate_name`]) because they end up in store ref
//! paths.
//!
//! Times are [`time::OffsetDateTime`] serialized as RFC 3339 through the
//! `time` crate's `serde::rfc3339` module. `time` over `chrono`: smaller,
//! no local-timezone lookups (a pure crate must not read the system
//! timezone), and RFC 3339 parse/format built in; over `humantime`: a typed
//! offset-aware value instead of `SystemTime`, comparable with the `now`
//! the verifier is given.
//!
//! **Digests of documents.** A release is named by the digest of its
//! envelope's *payload* bytes ([`crate::Envelope::payload_digest`]), and a
//! channel statement's `previous` is likewise the payload digest of the
//! previous statement. The payload is exactly what the signers signed;
//! the envelope around it changes when a second signer co-signs (threshold
//! 2) and its JSON spelling is not canonical, so it is the wrong thing to
//! name.

use cairn_digest::Digest;
use serde::de::DeserializeOwned;
use serde::Serialize;
use time::OffsetDateTime;

use crate::dsse::Envelope;

mod provenance;

pub use provenance::{
    BuildDefinition, BuildMetadata, Builder, DigestSet, Material, Predicate, ProvenanceInputs,
    ResourceDescriptor, RunDetails, Statement, PREDICATE_TYPE, STATEMENT_TYPE,
};

/// `payloadType` of a release.
pub const RELEASE_PAYLOAD_TYPE: &str = "application/vnd.cairn.release+json";
/// `payloadType` of a channel statement.
pub const CHANNEL_PAYLOAD_TYPE: &str = "application/vnd.cairn.channel+json";
/// `payloadType` of an in-toto statement (provenance).
pub const PROVENANCE_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Longest service or channel name.
pub const MAX_NAME_LEN: usize = 63;

/// Why a payload is not a valid document.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The payload is not the JSON shape of this document.
    #[error("payload is not a valid {payload_type} document: {source}")]
    Json {
        /// The payload type that was expected.
        payload_type: &'static str,
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A service or channel name breaks the naming rule.
    #[error("{field} name {value:?} is invalid: {reason}")]
    BadName {
        /// Which field (`service` or `channel`).
        field: &'static str,
        /// The offending value.
        value: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// A field with a fixed value (`_type`, `predicateType`) has another.
    #[error("{field} is {got:?}, expected {want:?}")]
    WrongConstant {
        /// The field.
        field: &'static str,
        /// The value found.
        got: String,
        /// The only accepted value.
        want: &'static str,
    },
}

/// A signed JSON document with its own payload type.
pub trait Document: Serialize + DeserializeOwned {
    /// The DSSE `payloadType` this document travels under.
    const PAYLOAD_TYPE: &'static str;

    /// Checks rules the JSON shape cannot express.
    fn validate(&self) -> Result<(), DocumentError>;

    /// The payload bytes (compact JSON).
    fn to_payload(&self) -> Vec<u8> {
        // Plain structs of strings, numbers and digests always serialize.
        serde_json::to_vec(self).expect("document serializes")
    }

    /// An unsigned envelope carrying this document.
    fn to_envelope(&self) -> Envelope {
        Envelope::new(Self::PAYLOAD_TYPE, self.to_payload())
    }

    /// Parses and validates payload bytes.
    fn from_payload(bytes: &[u8]) -> Result<Self, DocumentError> {
        let doc: Self = serde_json::from_slice(bytes).map_err(|source| DocumentError::Json {
            payload_type: Self::PAYLOAD_TYPE,
            source,
        })?;
        doc.validate()?;
        Ok(doc)
    }
}

/// A release: what to run for a service, pinned by digests.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The service name.
    pub service: String,
    /// A human version label (not interpreted).
    pub version: String,
    /// Digest of the artifact tree's root `Directory`.
    pub artifact: Digest,
    /// Digest of the build action that produced it (pins every input).
    pub action: Digest,
    /// The run specification (command, sockets, health, stop, env); kept
    /// as JSON here, interpreted by the agent.
    pub run: serde_json::Value,
    /// How the release rolls out across a deployment set (`[deploy]` of
    /// `cairn.toml`: strategy, `max_unavailable`, `on_failure`, gates);
    /// kept as JSON here, interpreted by the agents (`cairn_rollout::Plan`).
    /// Absent in releases made before it existed, and then not written at
    /// all, so their payload, and so their digest, stays the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<serde_json::Value>,
    /// Payload digest of the provenance statement's envelope.
    pub provenance: Digest,
    /// When the release was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
}

impl Document for Release {
    const PAYLOAD_TYPE: &'static str = RELEASE_PAYLOAD_TYPE;

    fn validate(&self) -> Result<(), DocumentError> {
        validate_name("service", &self.service)
    }
}

/// A channel statement: "channel C of service S runs release R", with a
/// sequence number that only grows and an expiry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelStatement {
    /// The service name.
    pub service: String,
    /// The channel name.
    pub channel: String,
    /// Payload digest of the release envelope.
    pub release: Digest,
    /// Strictly greater than every earlier statement's for this channel.
    pub sequence: u64,
    /// Payload digest of the statement this one replaces, if any.
    pub previous: Option<Digest>,
    /// After this instant the statement must not be acted upon.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// When the statement was made, for people reading the channel's
    /// history (absent in statements made before it was recorded). Not
    /// used for any trust decision: the sequence number orders statements.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub issued: Option<OffsetDateTime>,
}

impl Document for ChannelStatement {
    const PAYLOAD_TYPE: &'static str = CHANNEL_PAYLOAD_TYPE;

    fn validate(&self) -> Result<(), DocumentError> {
        validate_name("service", &self.service)?;
        validate_name("channel", &self.channel)
    }
}

/// Checks a service or channel name: `[a-z0-9][a-z0-9._-]*`, at most 63
/// bytes. `field` names the field in the error.
pub fn validate_name(field: &'static str, value: &str) -> Result<(), DocumentError> {
    let reason = if value.is_empty() {
        Some("it is empty")
    } else if value.len() > MAX_NAME_LEN {
        Some("it is longer than 63 characters")
    } else if !value.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        Some("it must start with a-z or 0-9")
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only a-z, 0-9, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(DocumentError::BadName {
            field,
            value: value.to_owned(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests;
