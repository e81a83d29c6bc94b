//! Releases and channels as they live in the store.
//!
//! A signed document is kept twice over: its payload as a blob, so that its
//! digest (the payload digest, see `cairn_trust`) resolves to verified
//! content in any store; and its DSSE envelope, with the signatures, in a
//! ref:
//!
//! ```text
//! releases/<service>/<payload hex>              the release envelope (written once)
//! channels/<service>/<channel>                  the latest channel statement envelope
//! statements/<service>/<channel>/<payload hex>  each statement's envelope, all its signatures
//! ```
//!
//! A release's provenance records its recipe and the tree of every input
//! ([`recorded`]), and the pipeline behind it: the tests that gated it and
//! the platform of each step ([`Pipeline`]); so it can be rebuilt from the store alone, and a copy
//! of a release or a channel to another store ([`copy_release`],
//! [`copy_channel`]) takes everything a consumer there needs.
//!
//! Promotion is a compare-and-swap on the channel ref; a writer that loses
//! the race re-reads and retries on the fresh value, so two promotions can
//! never overwrite each other and sequence numbers never repeat. A channel
//! that needs several signatures holds its newest statement with whatever
//! signatures it has; verifiers refuse it until the threshold is met
//! (`cairn channel sign` adds one), and keep running what they accepted
//! before.
//!
//! The rules of trust are `cairn_trust::verify`'s; this crate runs them on
//! what the store holds, in the one acceptance chain every consumer uses
//! ([`accept`]), and keeps each consumer's high-water marks on disk
//! ([`HighWaterMarks`]) so that an older statement is refused after a
//! restart too.

mod acceptance;
mod channel;
mod copy;
mod create;
mod error;
mod history;
mod marks;
mod pipeline;
mod recorded;
mod release;

pub use acceptance::{accept, AcceptError, Accepted, Refused};
pub use marks::{HighWaterMarks, Mark, MarkError};

pub use channel::{
    channel_ref, cosign, current, merge_signatures, promote, record_signatures, statement_ref,
    Current, DEFAULT_EXPIRY,
};
pub use copy::{copy_channel, copy_release, ChannelCopy, ChannelMove};
pub use create::{
    create_release, derived_version, Built, BuiltInput, Created, BUILD_TYPE, INPUTS, RECIPE, STEP,
};
pub use error::ReleaseError;
pub use history::{history, rollback_target, HistoryEntry};
pub use pipeline::{GatingTest, Pipeline, PipelineStep, StepPlatform, PASSED, STEPS, TESTS};
pub use recorded::{recorded, Recorded};
pub use release::{load_release, publish_release, release_ref, LoadedRelease};
