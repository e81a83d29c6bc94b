//! Trees and actions in the shapes of the Bazel Remote Execution API v2.
//!
//! A directory is a Merkle tree of [`proto::Directory`] messages: files with
//! their digest and executable bit, subdirectories by digest, symlinks with
//! their target. Nothing else is recorded (no times, owners or other mode
//! bits), so a tree's digest depends only on names, contents, the executable
//! bit and symlink targets.
//!
//! The messages are written by hand with `prost` derives, keeping the field
//! numbers of `build/bazel/remote/execution/v2/remote_execution.proto` so the
//! bytes are those any REAPI client produces (Bazel reads our action results).
//! Writing them by hand keeps `protoc` out of the build.
//!
//! Encoding is deterministic: prost writes fields in tag order and we keep
//! entries sorted. Decoding is strict ([`decode_directory`]): names sorted
//! and unique, no `/`, `.`, `..` or NUL, digests well-formed, and the bytes
//! must be the canonical encoding (which also rejects unknown fields), so a
//! tree has exactly one digest.

pub mod proto;

mod directory;
mod links;
mod path;
mod prefix;

pub use directory::{
    decode_directory, directory_digest, encode_directory, validate_directory, DirectoryBuilder,
    TreeError,
};
pub use links::{EscapingLink, LinkTree, Resolution, MAX_SYMLINK_FOLLOWS};
pub use path::{validate_name, NameError};
pub use prefix::could_begin_directory;
