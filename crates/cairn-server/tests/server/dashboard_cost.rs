//! What many dashboard readers cost the store: one summary is built for
//! the requests that arrive together.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use cairn_server::ServerConfig;
use cairn_store::refs::{RefStore, RefWatch, Version, Versioned};
use cairn_store::{MemoryStore, RefName, Store};

use crate::harness::http;

/// Refs that count how often `releases/` is listed (once per summary).
#[derive(Debug)]
struct CountingLists {
    inner: Arc<MemoryStore>,
    releases: AtomicUsize,
}

#[async_trait]
impl RefStore for CountingLists {
    async fn get(&self, name: &RefName) -> cairn_store::Result<Option<Versioned>> {
        self.inner.get(name).await
    }
    async fn list(&self, prefix: &str) -> cairn_store::Result<Vec<RefName>> {
        if prefix == "releases/" {
            self.releases.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.list(prefix).await
    }
    async fn compare_and_swap(
        &self,
        name: &RefName,
        expected: Option<&Version>,
        value: Vec<u8>,
    ) -> cairn_store::Result<Version> {
        self.inner.compare_and_swap(name, expected, value).await
    }
    async fn delete(&self, name: &RefName, expected: &Version) -> cairn_store::Result<()> {
        self.inner.delete(name, expected).await
    }
    async fn watch(&self, prefix: &str) -> cairn_store::Result<Option<RefWatch>> {
        self.inner.watch(prefix).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_dashboard_readers_share_one_summary() {
    let memory = Arc::new(MemoryStore::new());
    let refs = Arc::new(CountingLists {
        inner: memory.clone(),
        releases: AtomicUsize::new(0),
    });
    let store = Store {
        blobs: memory.clone(),
        refs: refs.clone(),
        local: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = ServerConfig {
        anonymous_read: true,
        ..ServerConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cairn_server::serve(listener, store, config, async {
        let _ = stopped.await;
    }));
    let c = http();
    let readers = (0..32).map(|_| c.get(format!("{url}/v1/dashboard")).send());
    for answer in futures::future::join_all(readers).await {
        assert_eq!(answer.unwrap().status(), 200);
    }
    let built = refs.releases.load(Ordering::SeqCst);
    assert!(built <= 2, "32 readers together made {built} summaries");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
