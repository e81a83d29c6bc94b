//! Creating a release from a build: provenance and release, signed and
//! stored, readable back and verifiable.

use cairn_digest::Digest;
use cairn_release::{
    create_release, load_release, recorded, Built, BuiltInput, GatingTest, Pipeline, PipelineStep,
    StepPlatform,
};
use cairn_store::{BlobStoreExt, Store};
use cairn_trust::{verify_release, Document, Envelope, KeySet, SigningKey, Statement};
use time::macros::datetime;

#[tokio::test]
async fn a_release_carries_signed_provenance_naming_every_input() {
    let store = Store::memory();
    let key = SigningKey::from_seed(&[9; 32]);
    let built = Built {
        service: "hello".into(),
        step: "build".into(),
        artifact: Digest::of(b"artifact tree"),
        action: Digest::of(b"action"),
        inputs: vec![
            BuiltInput {
                name: "src".into(),
                tree: Digest::of(b"src tree"),
                fetched: None,
            },
            BuiltInput {
                name: "vendor".into(),
                tree: Digest::of(b"vendor tree"),
                fetched: Some((
                    "https://example.org/v.tar".into(),
                    Digest::of(b"vendor.tar"),
                )),
            },
        ],
        recipe: b"[service]\nname = \"hello\"\n".to_vec(),
        builder_id: "urn:cairn:builder:test".into(),
        started: datetime!(2026-11-23 10:00 UTC),
        finished: datetime!(2026-11-23 10:01 UTC),
        pipeline: Pipeline {
            tests: vec![GatingTest {
                step: "unit".into(),
                action: Digest::of(b"unit action"),
                result: "passed".into(),
                output: Digest::of(b"unit report"),
                platform: StepPlatform {
                    name: "linux/arm64".into(),
                    native: false,
                },
            }],
            steps: vec![PipelineStep {
                step: "build".into(),
                action: Digest::of(b"action"),
                platform: StepPlatform {
                    name: "linux/amd64".into(),
                    native: true,
                },
            }],
        },
    };
    let run = serde_json::json!({"command": ["bin/hello"]});
    let deploy = serde_json::json!({"strategy": "rolling", "max_unavailable": "10%"});
    let now = datetime!(2026-11-23 10:02 UTC);
    let created = create_release(
        &store,
        &built,
        run.clone(),
        Some(deploy.clone()),
        None,
        &key,
        now,
    )
    .await
    .unwrap();

    let loaded = load_release(&store, &created.release).await.unwrap();
    assert_eq!(loaded.release.artifact, built.artifact);
    assert_eq!(
        loaded.release.version,
        format!("2026.11.23-{}", &built.artifact.hex()[..8])
    );
    assert_eq!(loaded.release.run, run);
    assert_eq!(loaded.release.deploy, Some(deploy));
    let trusted: KeySet = [key.public_key()].into_iter().collect();
    verify_release(&loaded.envelope, &trusted, &created.release).unwrap();

    let envelope =
        Envelope::from_json(&store.blobs.get_bytes(&created.provenance).await.unwrap()).unwrap();
    assert!(
        !envelope.check(&trusted).valid.is_empty(),
        "provenance is not signed"
    );
    let statement = Statement::from_payload(&envelope.payload).unwrap();
    let json = serde_json::to_value(&statement).unwrap();
    assert_eq!(json["subject"][0]["digest"]["sha256"], built.artifact.hex());
    let deps = json["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert_eq!(deps.len(), 2);
    assert_eq!(deps[1]["uri"], "https://example.org/v.tar");
    assert_eq!(deps[1]["digest"]["sha256"], Digest::of(b"vendor.tar").hex());
    // The gating test and the step's platform, where the builder's own
    // findings go.
    let internal = &json["predicate"]["buildDefinition"]["internalParameters"];
    assert_eq!(internal["tests"][0]["step"], "unit");
    assert_eq!(
        internal["tests"][0]["action"],
        format!("{:#}", Digest::of(b"unit action"))
    );
    assert_eq!(internal["tests"][0]["result"], "passed");
    assert_eq!(internal["tests"][0]["platform"], "linux/arm64");
    assert_eq!(internal["steps"][0]["step"], "build");
    assert_eq!(internal["steps"][0]["platform"], "linux/amd64");
    assert_eq!(internal["steps"][0]["native"], true);

    // The recipe and every input's tree are recorded, for a rebuild from
    // the store alone.
    let rec = recorded(&store, &loaded.release).await.unwrap();
    assert_eq!(rec.step.as_deref(), Some("build"));
    let recipe = store.blobs.get_bytes(&rec.recipe.unwrap()).await.unwrap();
    assert_eq!(recipe, built.recipe);
    assert_eq!(rec.inputs["src"], Digest::of(b"src tree"));
    assert_eq!(rec.inputs["vendor"], Digest::of(b"vendor tree"));
    assert_eq!(
        rec.pipeline, built.pipeline,
        "the pipeline reads back as recorded"
    );
}
