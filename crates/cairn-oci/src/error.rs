//! What can go wrong with images, each error naming the image, layer or
//! entry it is about.

use std::io;
use std::path::PathBuf;

use cairn_digest::Digest;

/// A document that is not what the OCI spec says it must be.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A digest that is not `sha256:` and 64 lowercase hex digits.
    #[error("digest {0:?} is not sha256:<64 lowercase hex> (only SHA-256 is supported)")]
    BadDigest(String),
    /// JSON of the wrong shape.
    #[error("{what} is not valid JSON of its kind: {source}")]
    Json {
        /// What was being read.
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A media type cairn does not handle here.
    #[error("{what} has unsupported media type {media_type:?}")]
    MediaType {
        /// What was being read.
        what: String,
        /// The media type found.
        media_type: String,
    },
    /// Anything else the spec forbids.
    #[error("{what}: {reason}")]
    Invalid {
        /// What was being read.
        what: String,
        /// The broken rule.
        reason: String,
    },
}

/// Why an image could not be exported from a tree.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the tree from the store failed.
    #[error("reading {what} from the store: {source}")]
    Source {
        /// The directory or file.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A directory of the tree does not decode.
    #[error("directory {digest} of the tree: {source}")]
    Tree {
        /// The directory.
        digest: Digest,
        /// Why it is invalid.
        #[source]
        source: cairn_tree::TreeError,
    },
    /// Writing the layout failed.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The output directory exists and is not empty.
    #[error("{} exists and is not empty", .0.display())]
    NotEmpty(PathBuf),
    /// A base image that cannot be built upon.
    #[error("base image {reference}: {source}")]
    Base {
        /// The base image.
        reference: String,
        /// Why.
        #[source]
        source: Box<crate::PullError>,
    },
}

impl ExportError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
