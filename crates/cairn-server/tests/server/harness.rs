//! Starting a server for one test, with a token of each kind.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cairn_server::{Scope, ServerConfig};
use cairn_store::http::HttpStore;
use cairn_store::{FsStore, Store};

/// A running server and what a test needs to talk to it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    pub root: PathBuf,
    pub tokens_file: PathBuf,
    pub admin: String,
    pub read: String,
    pub write: String,
    pub fs: std::sync::Arc<FsStore>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _tmp: tempfile::TempDir,
}

pub struct Options {
    pub anonymous_read: bool,
    pub with_tokens: bool,
    pub event_ring: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            anonymous_read: false,
            with_tokens: true,
            event_ring: 0,
        }
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        let fs = FsStore::open(&root).unwrap();
        let tokens_file = tmp.path().join("tokens.toml");
        let token = |name: &str, scopes: &[Scope]| {
            if opts.with_tokens {
                cairn_server::tokens::create(&tokens_file, name, scopes).unwrap()
            } else {
                format!("cairn_not_issued_{name}")
            }
        };
        let admin = token("admin", &[Scope::Admin]);
        let read = token("reader", &[Scope::Read]);
        let write = token("writer", &[Scope::Write]);
        let store = Store::local(fs);
        let fs = store.local.clone().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = ServerConfig {
            tokens: Some(tokens_file.clone()),
            anonymous_read: opts.anonymous_read,
            event_ring: opts.event_ring,
            ..ServerConfig::default()
        };
        let handle = tokio::spawn(cairn_server::serve(listener, store, config, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            url: format!("http://{addr}"),
            root,
            tokens_file,
            admin,
            read,
            write,
            fs,
            stop: Some(stop),
            handle: Some(handle),
            _tmp: tmp,
        }
    }

    /// Adds a token while the server runs.
    pub fn token(&self, name: &str, scopes: &[&str]) -> String {
        let scopes: Vec<Scope> = scopes.iter().map(|s| s.parse().unwrap()).collect();
        cairn_server::tokens::create(&self.tokens_file, name, &scopes).unwrap()
    }

    /// A store client with `token`.
    pub fn client(&self, token: &str) -> Store {
        HttpStore::new(&self.url, Some(token.into()), &[])
            .unwrap()
            .into_store()
    }

    /// Asks the server to stop and waits for it.
    pub async fn stop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("server did not shut down within 10 s")
            .unwrap()
            .unwrap();
    }

    /// Files left in the store's tmp/ (a failed upload must leave none).
    pub fn tmp_files(&self) -> usize {
        std::fs::read_dir(self.root.join("tmp")).unwrap().count()
    }

    /// Sends raw bytes and returns the status code of the answer.
    pub async fn raw(&self, request: &[u8]) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut head = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head))
            .await
            .expect("no answer within 10 s")
            .unwrap();
        std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
    }
}

/// A reqwest client (raw HTTP, no store semantics).
pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Waits until `cond` holds (the server finishes failed uploads after the
/// client is gone, so tests poll briefly).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..100 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 5 s");
}
