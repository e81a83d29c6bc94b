//! Trust for cairn: who may say what runs where, and how an agent checks it.
//!
//! Everything cairn signs is a [DSSE](https://github.com/secure-systems-lab/dsse)
//! envelope ([`dsse::Envelope`]) carrying one of three JSON documents
//! ([`document`]): a [`Release`], an in-toto provenance [`Statement`], or a
//! [`ChannelStatement`] that points a channel at a release. A [`TrustPolicy`]
//! says which keys (and how many of them) a channel needs, and [`verify`]
//! is the single place where an envelope is accepted or refused with a
//! precise [`Refusal`]; the CLI and the agent both call it, so they cannot
//! disagree about what is trusted.
//!
//! The crate is pure: no file or network I/O, and the current time is a
//! parameter, so every rule (expiry, replay, threshold) is tested without a
//! clock. Key files on disk are `cairn-keyring`'s job.

pub mod document;
pub mod dsse;
pub mod key;
pub mod policy;
pub mod verify;

#[cfg(test)]
mod fixtures;

pub use document::{
    ChannelStatement, Document, DocumentError, Release, Statement, CHANNEL_PAYLOAD_TYPE,
    PROVENANCE_PAYLOAD_TYPE, RELEASE_PAYLOAD_TYPE,
};
pub use dsse::Envelope;
pub use key::{KeyError, KeyId, KeySet, PublicKey, SigningKey};
pub use policy::{ChannelPolicy, PolicyError, TrustPolicy};
pub use verify::{verify_attestation, verify_channel, verify_release, Refusal, VerifiedStatement};
