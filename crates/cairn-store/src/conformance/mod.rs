//! The behaviour every backend and every store wrapper must show, as one
//! suite: [`all`] runs every property against a fresh, empty store.
//!
//! Each backend's tests call [`all`]: memory and local directory here, S3
//! against moto (`tests/s3.rs`), a `cairn server` in `cairn-server`'s
//! tests (which this crate cannot depend on), and wrappers where they are
//! defined, which also pass [`forwards_blobs`].
//!
//! It panics (with a message naming the broken property) instead of
//! returning errors, because it is only ever called from tests; it is
//! built only with the `test-support` feature, so it is not in the
//! shipped binary.

mod blobs;
mod forwarding;
mod refs;

pub use blobs::{assemble, blobs, has_closures, put_many, BLOB_A, BLOB_B};
pub use forwarding::forwards_blobs;
pub use refs::{nesting, pages, races, refs, watch};

use crate::Store;

/// Runs every property against `store`, which must be empty: blobs
/// (verified puts and gets), batches ([`put_many`]), assembly from chunks,
/// closure questions, refs (compare-and-swap, listing, limits, deletion),
/// racing writers, and watching (pushed or polled). Optional capabilities
/// a backend lacks (assembly, closures) are checked only to answer
/// "unsupported" without side effects.
pub async fn all(store: &Store) {
    let blobs = store.blobs.as_ref();
    blobs::blobs(blobs).await;
    put_many(blobs).await;
    assemble(blobs).await;
    has_closures(blobs).await;
    let refs = store.refs.as_ref();
    refs::refs(refs).await;
    nesting(refs).await;
    pages(refs).await;
    races(refs).await;
    watch(store.refs.clone()).await;
}
