//! Group commit for uploads: every blob PUT is durable before it is
//! answered, but concurrent uploads share one store flush (`syncfs(2)` on a
//! local store) instead of one each.
//!
//! Each finished `put` takes a sequence number; [`GroupFlush::wait`] returns
//! once a flush that *started* after that number was handed out has
//! completed. Flushes run one at a time; whoever gets the lock flushes
//! everything finished so far, and the uploads queued behind it usually
//! find their number already covered.

use std::sync::atomic::{AtomicU64, Ordering};

use cairn_store::Store;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct GroupFlush {
    /// Puts finished so far (the last number handed out).
    finished: AtomicU64,
    /// Every put numbered up to this is durable.
    durable: AtomicU64,
    lock: tokio::sync::Mutex<()>,
}

impl GroupFlush {
    /// Call after a `put` returned: waits until it is durable.
    pub(crate) async fn wait(&self, store: &Store) -> cairn_store::Result<()> {
        let mine = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        if self.durable.load(Ordering::SeqCst) >= mine {
            return Ok(());
        }
        let _guard = self.lock.lock().await;
        if self.durable.load(Ordering::SeqCst) >= mine {
            return Ok(());
        }
        // Every put numbered up to `upto` had finished before this read.
        let upto = self.finished.load(Ordering::SeqCst);
        store.blobs.flush().await?;
        self.durable.fetch_max(upto, Ordering::SeqCst);
        Ok(())
    }
}
