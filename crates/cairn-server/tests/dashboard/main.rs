//! The dashboard in a real browser: the server on 127.0.0.1:0 over a local
//! store, seeded with a signed release, a promotion and fleet records, and
//! a headless Chromium driven over the DevTools protocol. It checks that
//! the page shows the store's state and follows a promotion made while it
//! is open, without a reload.
//!
//! Needs `/usr/bin/chromium` (Debian's `chromium`); fails without it. With
//! `CAIRN_UPDATE_SCREENSHOT=1` it also writes `docs/dashboard.png`.

mod cdp;

use std::path::PathBuf;

use cairn_digest::Digest;
use cairn_server::ServerConfig;
use cairn_store::{BlobStoreExt, FsStore, RefName, Store};
use cairn_trust::{Release, SigningKey};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use tokio::runtime::Runtime;

const SERVICE: &str = "web";
const AGENT: &str = "agent-eu-7";

/// A server running on its own runtime, and a handle on its store.
struct Fixture {
    rt: Runtime,
    store: Store,
    url: String,
    key: SigningKey,
    _tmp: tempfile::TempDir,
}

impl Fixture {
    fn start() -> Self {
        Self::start_with(true)
    }

    fn start_with(anonymous_read: bool) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::local(FsStore::open(tmp.path().join("store")).unwrap());
        let config = ServerConfig {
            anonymous_read,
            ..ServerConfig::default()
        };
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let serving = cairn_server::serve(listener, store.clone(), config, std::future::pending());
        rt.spawn(serving);
        Self {
            rt,
            store,
            url,
            key: SigningKey::from_seed(&[7; 32]),
            _tmp: tmp,
        }
    }

    /// Publishes a release labelled `version` and promotes `prod` to it.
    fn release_and_promote(&self, version: &str) -> Digest {
        self.rt.block_on(async {
            let blob = |s: String| self.store.blobs.put_bytes(s.into_bytes());
            let release = Release {
                service: SERVICE.into(),
                version: version.into(),
                artifact: blob(format!("artifact {version}")).await.unwrap(),
                action: blob(format!("action {version}")).await.unwrap(),
                run: json!({"command": ["/bin/web"]}),
                deploy: None,
                provenance: blob(format!("provenance {version}")).await.unwrap(),
                created: OffsetDateTime::now_utc(),
            };
            let digest = cairn_release::publish_release(&self.store, &release, &self.key)
                .await
                .unwrap();
            let now = OffsetDateTime::now_utc();
            cairn_release::promote(
                &self.store,
                SERVICE,
                "prod",
                &digest,
                &self.key,
                Duration::days(30),
                now,
            )
            .await
            .unwrap();
            digest
        })
    }

    /// Writes a fleet record (created once; the test never rewrites one).
    fn put_json(&self, name: &str, value: serde_json::Value) {
        let name = RefName::new(name).unwrap();
        let bytes = serde_json::to_vec(&value).unwrap();
        self.rt
            .block_on(self.store.refs.compare_and_swap(&name, None, bytes))
            .unwrap();
    }

    fn seed_fleet(&self, release: &Digest) {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        for (agent, health) in [(AGENT, "healthy"), ("agent-eu-8", "healthy")] {
            self.put_json(
                &format!("fleet/{SERVICE}/eu/members/{agent}"),
                json!({"release": release.to_string(), "sequence": 1, "state": "running",
                       "health": health, "heartbeat": now}),
            );
        }
        self.put_json(
            &format!("fleet/{SERVICE}/eu/rollout"),
            json!({"target": release.to_string(), "strategy": "rolling", "phase": "done",
                   "slots": [], "failures": []}),
        );
    }
}

/// The text of the page's first table: the first service's channels.
const CHANNELS: &str = "document.querySelector('section table').innerText";

#[test]
fn dashboard_shows_the_store_and_follows_promotions_live() {
    let fixture = Fixture::start();
    let first = fixture.release_and_promote("1.4.0");
    fixture.seed_fleet(&first);

    let browser = cdp::Browser::start();
    let mut page = browser.new_page();
    page.call("Page.navigate", json!({"url": format!("{}/", fixture.url)}));
    let body = "document.body ? document.body.innerText : ''";
    page.wait_for("release and member on the page", body, |text| {
        text.contains("1.4.0") && text.contains(AGENT)
    });
    // A marker that a reload would wipe out.
    page.eval("window.__cairnNoReload = true; 'ok'");
    page.wait_for(
        "the live watch to connect",
        "document.getElementById('live').textContent",
        |t| t == "live",
    );

    fixture.release_and_promote("1.5.0");
    let channels = page.wait_for("the new promotion on the page", CHANNELS, |text| {
        text.contains("1.5.0")
    });
    assert!(
        !channels.contains("1.4.0"),
        "prod still shows the old release:\n{channels}"
    );
    assert_eq!(
        page.eval("window.__cairnNoReload === true"),
        json!(true),
        "the page reloaded"
    );

    // A member record as `cairn agent` writes it (digests as objects)
    // appears live too.
    let second = fixture.release_and_promote("1.6.0");
    fixture.put_json(
        &format!("fleet/{SERVICE}/eu/members/agent-eu-9"),
        json!({"agent": "agent-eu-9", "release": second, "version": "1.6.0", "sequence": 3,
               "state": "updating", "health": "unknown", "heartbeat": 0,
               "last_error": "swap in progress"}),
    );
    let fleet = page.wait_for("the agent's member on the page", body, |text| {
        text.contains("agent-eu-9") && text.contains("swap in progress")
    });
    assert!(
        fleet.contains(&format!("{} (1.6.0)", &second.hex()[..12])),
        "{fleet}"
    );

    if std::env::var_os("CAIRN_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        save_screenshot(&mut page);
    }
}

#[test]
fn dashboard_needs_the_read_scope() {
    let fixture = Fixture::start_with(false);
    let get = |path: &str| {
        let url = format!("{}{path}", fixture.url);
        fixture.rt.block_on(async {
            let response = reqwest::get(url).await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    let (status, page) = get("/");
    assert_eq!(status, 401);
    assert!(page.contains("--anonymous-read"), "{page}");
    assert_eq!(get("/v1/dashboard").0, 401);
}

/// The text between `open` and `close` in `page`.
fn between<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
    let start = page.find(open).expect("opening tag") + open.len();
    let len = page[start..].find(close).expect("closing tag");
    &page[start..start + len]
}

#[test]
fn the_page_may_run_only_its_own_script_and_style() {
    use base64::Engine;
    use sha2::Digest as _;
    let hash = |text: &str| {
        let sum = sha2::Sha256::digest(text);
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(sum)
        )
    };
    for anonymous_read in [true, false] {
        let fixture = Fixture::start_with(anonymous_read);
        let url = format!("{}/", fixture.url);
        let (status, headers, page) = fixture.rt.block_on(async {
            let response = reqwest::get(url).await.unwrap();
            let headers = response.headers().clone();
            (
                response.status().as_u16(),
                headers,
                response.text().await.unwrap(),
            )
        });
        assert_eq!(status, if anonymous_read { 200 } else { 401 });
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let policy = headers["content-security-policy"].to_str().unwrap();
        for part in [
            "default-src 'none'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'none'",
            "base-uri 'none'",
        ] {
            assert!(policy.contains(part), "{part:?} not in {policy}");
        }
        if anonymous_read {
            let script = hash(between(&page, "<script>", "</script>"));
            let style = hash(between(&page, "<style>", "</style>"));
            assert!(
                policy.contains(&format!("script-src {script};")),
                "{policy}"
            );
            assert!(policy.contains(&format!("style-src {style};")), "{policy}");
        }
    }
}

#[test]
fn dashboard_json_has_the_summary() {
    let fixture = Fixture::start();
    let release = fixture.release_and_promote("2.0.0");
    fixture.seed_fleet(&release);
    let url = format!("{}/v1/dashboard", fixture.url);
    let summary: serde_json::Value = fixture.rt.block_on(async {
        serde_json::from_str(&reqwest::get(url).await.unwrap().text().await.unwrap()).unwrap()
    });
    let web = &summary["services"][0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["channels"][0]["version"], "2.0.0");
    assert_eq!(web["channels"][0]["sequence"], 1);
    assert_eq!(web["sets"][0]["members"][0]["agent"], AGENT);
    assert_eq!(web["sets"][0]["rollout"]["done"], 2);
}

fn save_screenshot(page: &mut cdp::Page) {
    use base64::Engine;
    let shot = page.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("screenshot data"))
        .unwrap();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png");
    std::fs::write(&path, png).unwrap();
}
