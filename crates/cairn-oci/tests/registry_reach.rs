//! Where a registry may send the client, against real HTTP servers in a
//! network of the test's own (`cairn_testkit::network`): a registry at the
//! public-looking 203.0.113.1 never gets a request onto loopback, by a
//! redirect, a token realm or an upload's `Location`, whether the target
//! is an address or a name resolving to one; a loopback registry still
//! may. Needs root and `ip` (iproute2); fails without them.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use cairn_digest::Digest;
use cairn_oci::{Reference, Registry, RegistryConfig, RegistryError};
use cairn_testkit::network::{in_a_network_of_its_own, ok, redirect, serve};

const MANIFEST: &[u8] = br#"{"schemaVersion":2}"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client of `registry/team/app`, plain HTTP allowed for it.
fn client(registry: SocketAddr) -> Registry {
    let reference = Reference::parse(&format!("{registry}/team/app:v1")).unwrap();
    let config = RegistryConfig {
        plain_http: vec![registry.to_string()],
        ..RegistryConfig::default()
    };
    Registry::new(&reference, &config, false)
}

fn manifest(_: SocketAddr, _: &str) -> String {
    ok(MANIFEST)
}

/// The error of reading the manifest of `registry`, which must be a
/// refusal; returns its message.
fn refused_manifest(registry: SocketAddr) -> String {
    let got = runtime().block_on(client(registry).get_manifest("v1"));
    let err = got.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RegistryError::Refused { .. }), "{text}");
    text
}

#[test]
fn a_public_registry_cannot_redirect_a_pull_to_loopback() {
    in_a_network_of_its_own("127.0.0.1 inside.example\n", |_| {
        let (inside, inside_hits) = serve("127.0.0.1", manifest);
        for target in [
            format!("http://{inside}/v2/team/app/manifests/v1"),
            format!(
                "http://inside.example:{}/v2/team/app/manifests/v1",
                inside.port()
            ),
        ] {
            let moved = target.clone();
            let (registry, _) = serve("203.0.113.1", move |_, _| redirect(&moved));
            let text = refused_manifest(registry);
            let why = if target.contains("inside.example") {
                "refused to connect to inside.example (127.0.0.1): a public origin may \
                 not reach a loopback, private or link-local address"
                    .to_owned()
            } else {
                format!("refused a redirect to {target}: a public origin may not redirect")
            };
            assert!(
                text.starts_with(&format!("{registry}/team/app: manifest v1: {why}")),
                "{text}"
            );
        }
        assert_eq!(
            inside_hits.load(Ordering::SeqCst),
            0,
            "loopback never asked"
        );
    });
}

#[test]
fn a_public_registry_cannot_send_its_token_request_to_loopback() {
    in_a_network_of_its_own("127.0.0.1 inside.example\n", |_| {
        let (inside, inside_hits) = serve("127.0.0.1", |_, _| ok(br#"{"token":"t"}"#));
        for realm in [
            format!("http://{inside}/token"),
            format!("http://inside.example:{}/token", inside.port()),
        ] {
            let challenge = realm.clone();
            let (registry, _) = serve("203.0.113.1", move |_, _| {
                format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{challenge}\",\
                     service=\"r\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            });
            let text = refused_manifest(registry);
            assert!(
                text.starts_with(&format!("{registry}/team/app: token from {realm}: refused")),
                "{text}"
            );
        }
        assert_eq!(
            inside_hits.load(Ordering::SeqCst),
            0,
            "loopback never asked"
        );
    });
}

#[test]
fn a_public_registry_cannot_send_an_upload_to_loopback() {
    in_a_network_of_its_own("", |_| {
        let (inside, inside_hits) = serve("127.0.0.1", |_, _| ok(b""));
        let upload = format!("http://{inside}/upload");
        let (registry, _) = serve("203.0.113.1", move |_, request| {
            if request.starts_with("HEAD") {
                return "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .into();
            }
            format!(
                "HTTP/1.1 202 Accepted\r\nLocation: {upload}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"layer").unwrap();
        let got = runtime().block_on(client(registry).push_blob(&Digest::of(b"layer"), &path));
        let err = got.unwrap_err();
        assert!(matches!(err, RegistryError::Refused { .. }), "{err}");
        assert_eq!(
            inside_hits.load(Ordering::SeqCst),
            0,
            "loopback never asked"
        );
    });
}

#[test]
fn a_loopback_registry_may_redirect_on_loopback() {
    in_a_network_of_its_own("", |_| {
        let (inside, inside_hits) = serve("127.0.0.1", manifest);
        let target = format!("http://{inside}/v2/team/app/manifests/v1");
        let (registry, _) = serve("127.0.0.1", move |_, _| redirect(&target));
        let got = runtime().block_on(client(registry).get_manifest("v1"));
        assert_eq!(got.unwrap().unwrap().0, MANIFEST);
        assert_eq!(inside_hits.load(Ordering::SeqCst), 1);
    });
}
