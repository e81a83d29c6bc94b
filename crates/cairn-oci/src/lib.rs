//! OCI images for cairn: releases exported as bit-for-bit reproducible
//! images, pushed to any registry that speaks the OCI distribution API,
//! and images pinned by digest unpacked into trees for build steps.
//!
//! The crate is layered like the rest of cairn: pure parts first —
//! the JSON documents with their exact media types ([`spec`], [`media`]),
//! references ([`mod@reference`]), how an artifact is cut into layers
//! ([`partition`]), the config and manifest of an export ([`image`]), the
//! attestation's statement and artifact ([`attest`]), authentication
//! challenges ([`registry::auth`]) — and the I/O around them: writing a
//! deterministic layer tar ([`layer`]) and a layout ([`layout`],
//! [`mod@export`]), applying hostile layers safely ([`unpack`]), and the
//! registry client ([`registry`], [`push`], [`mod@pull`]).
//!
//! Trees are read through the small [`TreeSource`] trait so the export is
//! blocking code over any [`cairn_store::BlobStore`] ([`StoreSource`]).

pub mod attest;
pub mod entries;
pub mod error;
pub mod export;
pub mod image;
pub mod layer;
pub mod layout;
pub mod media;
pub mod partition;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod source;
pub mod spec;
pub mod unpack;

pub use error::{ExportError, SpecError};
pub use export::{export, ExportRequest, Exported};
pub use image::{BaseImage, ImageSpec};
pub use layout::{Layout, LayoutError};
pub use pull::{pull, PullError, PulledImage};
pub use push::{push_image, Pushed};
pub use reference::{ImageLocation, Reference, ReferenceError};
pub use registry::{Credentials, Registry, RegistryConfig, RegistryError};
pub use source::{StoreSource, TreeSource};
pub use unpack::{LayerError, Limits};
