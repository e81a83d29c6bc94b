//! Which redirects a fetch follows, against real HTTP servers: inside a
//! network namespace the test makes itself, whose loopback interface also
//! carries the public-looking addresses 203.0.113.1 and .2 (a
//! documentation range), so that "a public origin
//! redirecting to loopback" is tried for real with no traffic leaving the
//! namespace. Needs root and `ip` (iproute2); fails without them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use cairn_digest::Digest;
use cairn_fetch::{fetch, FetchError};

const BLOB: &[u8] = b"bytes behind a redirect\n";

/// Runs `f` on a thread of its own, in a new network namespace with
/// loopback up, carrying 203.0.113.1 and 203.0.113.2 too.
fn in_a_network_of_its_own(f: impl FnOnce() + Send + 'static) {
    thread::spawn(move || {
        // SAFETY: a network namespace of this thread's own; the thread
        // shares nothing that depends on the namespace it had.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
            .expect("a network namespace of its own (tests run as root)");
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "203.0.113.1/32", "dev", "lo"],
            &["addr", "add", "203.0.113.2/32", "dev", "lo"],
        ] {
            let out = Command::new("ip")
                .args(args)
                .output()
                .expect("running ip (iproute2 is required)");
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        f()
    })
    .join()
    .unwrap();
}

/// A server on `ip` answering every request with `answer(its own address)`;
/// returns its address and how many requests it got.
fn serve(
    ip: &str,
    answer: impl Fn(SocketAddr, &str) -> String + Send + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    thread::spawn(move || {
        for conn in listener.incoming().take(32) {
            let Ok(mut conn) = conn else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let text = String::from_utf8_lossy(&request).into_owned();
            let _ = conn.write_all(answer(addr, &text).as_bytes());
        }
    });
    (addr, hits)
}

fn blob(_: SocketAddr, _: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        BLOB.len(),
        String::from_utf8_lossy(BLOB)
    )
}

fn redirect(to: &str) -> String {
    format!(
        "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
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
    in_a_network_of_its_own(|| {
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
    in_a_network_of_its_own(|| {
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
