//! Bringing bytes from outside into a build, safely.
//!
//! A fixed-output input names a URL and the digest its bytes must have.
//! [`fetch`] streams those bytes to a temporary file beside the destination
//! while hashing them, and only renames it into place when the digest
//! matches: a mismatch leaves nothing behind. [`unpack`] then turns a
//! fetched archive (`.tar`, `.tar.gz`, `.tar.zst`, recognised by their magic
//! bytes) into a directory, refusing any entry that could write outside it.
//!
//! Where a server may send a client (redirects, and the addresses a name
//! resolves to at connect time) is [`Reach`]'s to decide, one policy for
//! fetches here and for registry clients (`cairn-oci`).
//!
//! This crate does I/O at the edge of the build; the digests it checks come
//! from the recipe (`cairn-recipe`), and the directory it fills is
//! snapshotted into a tree by the build.

mod fetch;
pub mod reach;
pub mod redirect;
mod unpack;

pub use fetch::{fetch, fetch_with, FetchError, FetchLimits};
pub use reach::{AddressRefused, Reach, Refusal};
pub use unpack::{unpack, unpack_with, UnpackError, UnpackLimits, RATIO_FLOOR};
