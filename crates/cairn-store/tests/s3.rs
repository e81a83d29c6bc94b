//! The S3 backend against a real S3-compatible server (moto).
//!
//! Needs `moto_server` on PATH:
//!
//!     pip install 'moto[server]'
//!
//! The test fails (it does not skip) when moto_server is missing, so a CI
//! machine without it is noticed.
//!
//! One test function runs every property in turn against one server, so the
//! server is always stopped (its guard drops) however the test ends.

use cairn_digest::Digest;
use cairn_store::moto::{free_port, Moto};
use cairn_store::s3::{S3Store, S3Url};
use cairn_store::{
    conformance, BlobStore, BlobStoreExt, ErrorKind, OpenOptions, RefName, RefStore, StoreError,
};

const BUCKET: &str = "cairn-test";

/// A fresh, empty store under its own prefix.
async fn store(moto: &Moto, prefix: &str) -> S3Store {
    let store = moto.store(BUCKET, prefix);
    store
        .probe(true)
        .await
        .expect("moto supports conditional writes");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backend() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);

    conformance::all(&store(&moto, "conformance").await.into_store()).await;
    large_blobs_go_up_in_parts(&store(&moto, "large").await).await;
    corrupt_object_is_caught_on_read(&moto, &store(&moto, "corrupt").await).await;
    rewriting_a_value_changes_the_version(&store(&moto, "aba").await).await;
    a_huge_ref_object_is_refused_before_it_is_read(&moto, &store(&moto, "huge").await).await;
    racing_writers_of_a_and_a_slash_b_never_both_win(&store(&moto, "nesting").await).await;
}

/// Two writers racing to create `a` and `a/b` (each in its own round, 24
/// rounds): never both win, and the store never keeps both. A loser is
/// refused as the other ref being in its way. moto serves one request at
/// a time, so the two writers' requests interleave; before, each checked
/// before its write and both won.
async fn racing_writers_of_a_and_a_slash_b_never_both_win(store: &S3Store) {
    let mut won_both = Vec::new();
    let mut lost_both = 0;
    for round in 0..24 {
        let upper = RefName::new(format!("r{round}/a")).unwrap();
        let lower = RefName::new(format!("r{round}/a/b")).unwrap();
        let (u, l) = tokio::join!(
            store.compare_and_swap(&upper, None, b"upper".to_vec()),
            store.compare_and_swap(&lower, None, b"lower".to_vec()),
        );
        for (outcome, other) in [(&u, &lower), (&l, &upper)] {
            if let Err(e) = outcome {
                assert!(
                    matches!(e, StoreError::RefPathTaken { .. }),
                    "round {round}: {e}"
                );
                assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
                assert!(e.to_string().contains(other.as_str()), "{e}");
            }
        }
        match (u.is_ok(), l.is_ok()) {
            (true, true) => won_both.push(round),
            (false, false) => lost_both += 1,
            _ => {}
        }
        let kept = store.list(&format!("r{round}/")).await.unwrap();
        assert!(kept.len() <= 1, "round {round}: both kept: {kept:?}");
        let winner = [(&u, &upper), (&l, &lower)]
            .into_iter()
            .filter(|(o, _)| o.is_ok())
            .map(|(_, n)| n.clone());
        assert_eq!(kept, winner.collect::<Vec<_>>(), "round {round}");
    }
    assert_eq!(won_both, Vec::<usize>::new(), "rounds both writers won");
    eprintln!("nesting races: both refused in {lost_both} of 24 rounds");
}

async fn large_blobs_go_up_in_parts(store: &S3Store) {
    let big: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let digest = store.put_bytes(big.clone()).await.unwrap();
    assert_eq!(store.get_bytes(&digest).await.unwrap(), big);

    let mut lie = big.clone();
    lie[15 << 20] ^= 1;
    let wrong = Digest::of(&lie);
    let refused = store.put(&wrong, Box::pin(std::io::Cursor::new(big))).await;
    assert!(
        matches!(refused, Err(StoreError::Corrupt { .. })),
        "{refused:?}"
    );
    assert!(
        !store.has(&wrong).await.unwrap(),
        "a refused multipart put left an object"
    );
}

async fn corrupt_object_is_caught_on_read(moto: &Moto, store: &S3Store) {
    let digest = store.put_bytes(b"the real bytes".to_vec()).await.unwrap();
    // Overwrite the object behind the store's back with a plain client.
    let url = format!(
        "s3://{BUCKET}?endpoint=http://127.0.0.1:{}&region=us-east-1",
        moto.port()
    );
    let raw = S3Url::parse(&url)
        .unwrap()
        .builder(&moto.credentials())
        .build()
        .unwrap();
    let key = object_store::path::Path::from(format!("corrupt/blobs/{}", digest.hex()));
    object_store::ObjectStore::put(&raw, &key, b"fake bytes!!!!".to_vec().into())
        .await
        .unwrap();
    let read = store.get_bytes(&digest).await;
    assert!(matches!(read, Err(StoreError::Corrupt { .. })), "{read:?}");
}

/// A ref object far over the limit, put behind the store's back, is
/// refused naming the ref (not read whole into memory); the ref the store
/// wrote itself beside it is untouched.
async fn a_huge_ref_object_is_refused_before_it_is_read(moto: &Moto, store: &S3Store) {
    let kept = RefName::new("channels/web/prod").unwrap();
    store
        .compare_and_swap(&kept, None, b"v1".to_vec())
        .await
        .unwrap();
    let url = format!(
        "s3://{BUCKET}?endpoint=http://127.0.0.1:{}&region=us-east-1",
        moto.port()
    );
    let raw = S3Url::parse(&url)
        .unwrap()
        .builder(&moto.credentials())
        .build()
        .unwrap();
    let key = object_store::path::Path::from("huge/refs/channels/web/next");
    object_store::ObjectStore::put(&raw, &key, vec![b'x'; 3 << 20].into())
        .await
        .unwrap();
    let huge = RefName::new("channels/web/next").unwrap();
    let err = RefStore::get(store, &huge).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let text = err.to_string();
    assert!(text.contains("ref channels/web/next"), "{text}");
    assert!(text.contains("over the 1048576-byte limit"), "{text}");
    let kept = RefStore::get(store, &kept).await.unwrap().unwrap();
    assert_eq!(kept.value, b"v1");
}

async fn rewriting_a_value_changes_the_version(store: &S3Store) {
    let name = RefName::new("aba").unwrap();
    let v1 = store
        .compare_and_swap(&name, None, b"A".to_vec())
        .await
        .unwrap();
    let v2 = store
        .compare_and_swap(&name, Some(&v1), b"B".to_vec())
        .await
        .unwrap();
    let v3 = store
        .compare_and_swap(&name, Some(&v2), b"A".to_vec())
        .await
        .unwrap();
    assert_ne!(v1, v3, "A, B, A gave back A's version");
    assert!(store
        .compare_and_swap(&name, Some(&v1), b"C".to_vec())
        .await
        .is_err());
}

/// `connect` checks credentials, the bucket and the endpoint before a
/// command starts, and each failure says its kind and names the store in
/// one line, without the server's XML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_checks_credentials_bucket_and_endpoint() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let with_keys = |create| OpenOptions {
        aws: moto.credentials(),
        create,
        ..OpenOptions::default()
    };
    let url = moto.url(BUCKET, "connect");
    cairn_store::connect(&url, &with_keys(false)).await.unwrap();
    cairn_store::connect(&url, &with_keys(true)).await.unwrap();

    let absent = moto.url("no-such-bucket", "");
    let err = refused(&absent, &with_keys(false), ErrorKind::NotFound).await;
    assert!(err.contains("bucket \"no-such-bucket\" not found"), "{err}");
    refused(&absent, &with_keys(true), ErrorKind::NotFound).await;

    // No credentials at all: said plainly, not as a metadata request error.
    let mut none = OpenOptions::default();
    none.aws
        .insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
    let err = refused(&url, &none, ErrorKind::Unauthorized).await;
    assert!(
        err.contains("no S3 credentials: set AWS_ACCESS_KEY_ID"),
        "{err}"
    );
    assert!(!err.contains("metadata"), "{err}");
    // With a metadata service to ask that does not answer: said too.
    let silent = format!("http://127.0.0.1:{}", free_port());
    let mut none = OpenOptions::default();
    none.aws
        .insert("AWS_METADATA_ENDPOINT".into(), silent.clone());
    let err = refused(&url, &none, ErrorKind::Unauthorized).await;
    assert!(err.contains("no S3 credentials"), "{err}");
    assert!(
        err.contains(&format!(
            "no instance metadata service answered at {silent}"
        )),
        "{err}"
    );

    let nobody = format!(
        "s3://{BUCKET}?endpoint=http://127.0.0.1:{}&region=us-east-1",
        free_port()
    );
    let err = refused(&nobody, &with_keys(false), ErrorKind::Unavailable).await;
    assert!(err.contains("cannot connect"), "{err}");

    // An endpoint that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("s3://{BUCKET}?endpoint=http://127.0.0.1:{port}&region=us-east-1");
    let err = refused(&url, &with_keys(false), ErrorKind::Unavailable).await;
    assert!(err.contains("no answer in time"), "{err}");
}

/// Wrong keys are refused as the credentials' fault, at `connect` and on
/// every later request (a LIST included, whose status the S3 client does
/// not report), in one line with the server's code and no XML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_are_forbidden_not_unavailable() {
    let moto = Moto::start_refusing_credentials(BUCKET);
    let options = OpenOptions {
        aws: moto.credentials(),
        create: true,
        ..OpenOptions::default()
    };
    let url = moto.url(BUCKET, "");
    let err = refused(&url, &options, ErrorKind::Forbidden).await;
    assert!(err.contains("InvalidAccessKeyId"), "{err}");

    let store = moto.store(BUCKET, "");
    let listed = store.list("").await.unwrap_err();
    assert_eq!(listed.kind(), ErrorKind::Forbidden, "{listed}");
    let got = RefStore::get(&store, &RefName::new("a").unwrap())
        .await
        .unwrap_err();
    assert_eq!(got.kind(), ErrorKind::Forbidden, "{got}");
    let put = store.put_bytes(b"x".to_vec()).await.unwrap_err();
    assert_eq!(put.kind(), ErrorKind::Forbidden, "{put}");
    for e in [listed, got, put] {
        let line = one_line(&e);
        assert!(!line.contains('<'), "raw XML in {line}");
    }
}

/// Opens `url`, which must fail with `kind`; returns the whole message
/// (the error and its causes), checked to be one line naming the store.
async fn refused(url: &str, options: &OpenOptions, kind: ErrorKind) -> String {
    let err = cairn_store::connect(url, options).await.unwrap_err();
    assert_eq!(err.kind(), kind, "{url}: {err}");
    let line = one_line(&err);
    assert!(line.contains(url), "the store is not named: {line}");
    assert!(!line.contains('\n') && !line.contains('<'), "{line}");
    line
}

/// An error and its causes, as the command line prints them.
fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        line.push_str(&format!(": {cause}"));
        next = cause.source();
    }
    line
}
