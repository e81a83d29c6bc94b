//! Which redirects a fetch follows and where it connects, against real
//! HTTP servers: inside a network namespace the test makes itself, whose
//! loopback interface also carries the public-looking addresses
//! 203.0.113.1 and .2 (a documentation range), with an `/etc/hosts` of its
//! own, so that "a public origin redirecting to loopback", by address or
//! by a name that resolves there, is tried for real with no traffic
//! leaving the namespace (`cairn_testkit::network`). Needs root and `ip`
//! (iproute2); fails without them.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use cairn_digest::Digest;
use cairn_fetch::{fetch, FetchError};
use cairn_testkit::network::{in_a_network_of_its_own, ok, redirect, serve};

const BLOB: &[u8] = b"bytes behind a redirect\n";

fn blob(_: SocketAddr, _: &str) -> String {
    ok(BLOB)
}

/// Answers every request with a redirect to `target`.
fn to(target: String) -> impl Fn(SocketAddr, &str) -> String + Send + 'static {
    move |_, _| redirect(&target)
}

fn to_itself(addr: SocketAddr, _: &str) -> String {
    redirect(&format!("http://{addr}/again"))
}

async fn fetched(url: &str) -> (Result<Digest, FetchError>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let got = fetch(url, Digest::of(BLOB).into(), &dir.path().join("x")).await;
    let left = std::fs::read_dir(dir.path()).unwrap().count();
    (got, left)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_public_origin_cannot_send_a_fetch_to_loopback_but_may_to_other_public_hosts() {
    in_a_network_of_its_own("", |_| {
        let rt = runtime();
        let (inside, inside_hits) = serve("127.0.0.1", blob);
        let (public, public_hits) = serve("203.0.113.2", blob);
        for (target, allowed) in [
            (format!("http://{inside}/blob"), false),
            (format!("http://localhost:{}/blob", inside.port()), false),
            (format!("ftp://{public}/blob"), false),
            (format!("http://{public}/blob"), true),
        ] {
            let (origin, _) = serve("203.0.113.1", to(target.clone()));
            let url = format!("http://{origin}/start");
            let (got, left) = rt.block_on(fetched(&url));
            if allowed {
                assert_eq!(got.unwrap(), Digest::of(BLOB), "{target}");
                assert_eq!(left, 1, "{target}: the fetched file alone");
                continue;
            }
            assert_eq!(left, 0, "{target}: nothing is left behind");
            let err = got.unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, FetchError::Redirect { .. }),
                "{target}: {text}"
            );
            assert!(
                text.contains(&format!("fetching {url}: refused a redirect to {target}")),
                "{text}"
            );
        }
        assert_eq!(
            inside_hits.load(Ordering::SeqCst),
            0,
            "loopback was never asked"
        );
        assert_eq!(public_hits.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn a_loopback_origin_may_redirect_on_loopback_and_chains_are_bounded() {
    in_a_network_of_its_own("", |_| {
        let rt = runtime();
        let (inside, _) = serve("127.0.0.1", blob);
        let (origin, _) = serve("127.0.0.1", to(format!("http://{inside}/blob")));
        let (got, _) = rt.block_on(fetched(&format!("http://{origin}/start")));
        assert_eq!(got.unwrap(), Digest::of(BLOB));

        let (looping, hits) = serve("203.0.113.1", to_itself);
        let (got, left) = rt.block_on(fetched(&format!("http://{looping}/start")));
        let err = got.unwrap_err();
        assert!(matches!(err, FetchError::Redirect { .. }), "{err}");
        assert!(err.to_string().contains("more than 10 redirects"), "{err}");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            11,
            "the first request and 10 redirects"
        );
        assert_eq!(left, 0);
    });
}

/// Asserts `got` is a refusal to connect to `host`, whose only address
/// is 127.0.0.1, and that nothing was kept.
fn assert_refused_address(got: Result<Digest, FetchError>, left: usize, url: &str, host: &str) {
    assert_eq!(left, 0, "nothing is left behind");
    let err = got.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, FetchError::Address { .. }), "{text}");
    assert_eq!(
        text,
        format!(
            "fetching {url}: refused to connect to {host} (127.0.0.1): a public origin may not \
             reach a loopback, private or link-local address"
        )
    );
}

#[test]
fn a_public_origin_cannot_reach_loopback_through_a_name_that_resolves_there() {
    in_a_network_of_its_own("127.0.0.1 inside.example\n", |_| {
        let rt = runtime();
        let (inside, inside_hits) = serve("127.0.0.1", blob);
        let target = format!("http://inside.example:{}/blob", inside.port());
        let (origin, _) = serve("203.0.113.1", to(target));
        let url = format!("http://{origin}/start");
        let (got, left) = rt.block_on(fetched(&url));
        assert_refused_address(got, left, &url, "inside.example");
        assert_eq!(
            inside_hits.load(Ordering::SeqCst),
            0,
            "loopback never asked"
        );
    });
}

#[test]
fn a_public_origin_whose_name_rebinds_to_loopback_cannot_reach_it() {
    in_a_network_of_its_own("203.0.113.1 rebind.example\n", |hosts| {
        let rt = runtime();
        let (inside, inside_hits) = serve("127.0.0.1", blob);
        // The origin's DNS answers a public address first; once asked, it
        // answers loopback and sends the fetch back to its own name.
        let rebound = hosts.clone();
        let target = format!("http://rebind.example:{}/blob", inside.port());
        let (origin, origin_hits) = serve("203.0.113.1", move |_, _| {
            rebound.set("127.0.0.1 rebind.example\n");
            redirect(&target)
        });
        let url = format!("http://rebind.example:{}/start", origin.port());
        let (got, left) = rt.block_on(fetched(&url));
        assert_refused_address(got, left, &url, "rebind.example");
        assert_eq!(origin_hits.load(Ordering::SeqCst), 1);
        assert_eq!(
            inside_hits.load(Ordering::SeqCst),
            0,
            "loopback never asked"
        );
    });
}

#[test]
fn a_mirror_named_on_loopback_may_redirect_within_it() {
    in_a_network_of_its_own("127.0.0.1 mirror.example\n", |_| {
        let rt = runtime();
        let (inside, inside_hits) = serve("127.0.0.1", blob);
        let (mirror, _) = serve("127.0.0.1", to(format!("http://{inside}/blob")));
        let url = format!("http://mirror.example:{}/start", mirror.port());
        let (got, left) = rt.block_on(fetched(&url));
        assert_eq!(got.unwrap(), Digest::of(BLOB));
        assert_eq!(left, 1);
        assert_eq!(inside_hits.load(Ordering::SeqCst), 1);
    });
}
