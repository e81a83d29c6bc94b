//! `cairn store cat DIGEST`: a blob's bytes on stdout.
//!
//! Blobs up to 64 MiB are verified before the first byte is written, so a
//! corrupt blob produces no output at all; larger ones are streamed and
//! verified as they go, failing at the end.

use anyhow::{Context, Result};
use cairn_store::{BlobStoreExt, StoreError};
use tokio::io::AsyncWriteExt;

use super::super::Workspace;

const VERIFY_FIRST_LIMIT: u64 = 64 << 20;

pub async fn run(ws: &Workspace, text: &str) -> Result<i32> {
    let store = &ws.store;
    let digest = ws.digest(text).await?;
    let mut stdout = tokio::io::stdout();
    if digest.size() <= VERIFY_FIRST_LIMIT {
        let bytes = store.blobs.get_bytes(&digest).await?;
        stdout
            .write_all(&bytes)
            .await
            .context("writing to stdout")?;
    } else {
        let mut reader = store
            .blobs
            .get(&digest)
            .await?
            .ok_or(StoreError::NotFound(digest))?;
        tokio::io::copy(&mut reader, &mut stdout)
            .await
            .map_err(|e| cairn_store::blob::read_error(&digest, e))?;
    }
    stdout.flush().await.context("writing to stdout")?;
    Ok(0)
}
