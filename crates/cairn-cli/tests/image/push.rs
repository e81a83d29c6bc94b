//! Pushing to a registry (basic auth or bearer tokens) and back with
//! `skopeo`, verifying against a policy, and promotion tagging the image.

use std::process::Command;

use crate::{layout_manifest, refused, run_ok, Project, Registry, PASSWORD, USER};

#[test]
fn push_copies_back_with_skopeo_and_verifies_against_a_policy() {
    let p = Project::new();
    let reg = Registry::start();
    let repo = format!("{}/team/hello", reg.host);

    let err = refused(p.run(&["image", "push", &p.release, &repo, "--key", "ci"]));
    assert!(
        err.contains(&repo) && err.contains("refused authentication"),
        "{err}"
    );

    let pushed = p.with_login(&[
        "image",
        "push",
        &p.release,
        &format!("{repo}:v1"),
        "--key",
        "ci",
    ]);
    let manifest = pushed["manifest"].as_str().unwrap().to_string();
    assert!(pushed["blobs_sent"].as_u64().unwrap() >= 2, "{pushed}");
    let again = p.with_login(&[
        "image",
        "push",
        &p.release,
        &format!("{repo}:v1"),
        "--key",
        "ci",
    ]);
    assert_eq!(
        again["blobs_sent"], 0,
        "a second push re-sent blobs: {again}"
    );
    assert_eq!(again["manifest"], pushed["manifest"]);

    let back = p.tmp.path().join("back");
    reg.copy_back(&format!("{repo}:v1"), &back);
    assert_eq!(layout_manifest(&back), manifest);
    let att = run_ok(
        Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                &reg.creds(),
            ])
            .arg(format!(
                "docker://{repo}:sha256-{}.att",
                &manifest["sha256:".len()..]
            )),
    );
    assert!(
        att.contains("application/vnd.dsse.envelope.v1+json"),
        "{att}"
    );

    let policy = p.policy("ci");
    let accepted = p.with_login(&[
        "image",
        "verify",
        &format!("{repo}:v1"),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(accepted["accepted"], true);
    assert_eq!(accepted["manifest"], manifest.as_str());
    assert!(accepted["release"]
        .as_str()
        .unwrap()
        .starts_with(&p.release));

    let wrong = p.policy("other");
    let out = p
        .cairn()
        .env("CAIRN_REGISTRY_USER", USER)
        .env("CAIRN_REGISTRY_PASSWORD", PASSWORD)
        .args(["image", "verify", &format!("{repo}:v1"), "--policy"])
        .arg(&wrong)
        .output()
        .unwrap();
    let err = refused(out);
    assert!(
        err.contains("refused image") && err.contains("not list"),
        "{err}"
    );

    // Large blobs go in chunks (PATCH); the registry assembles the same bytes.
    let chunked = format!("{}/team/chunked:v1", reg.host);
    p.with_login(&[
        "image",
        "push",
        &p.release,
        &chunked,
        "--key",
        "ci",
        "--upload-chunk-size",
        "100",
    ]);
    let back2 = p.tmp.path().join("back2");
    run_ok(
        Command::new("skopeo")
            .args([
                "copy",
                "--src-tls-verify=false",
                "--src-creds",
                &reg.creds(),
            ])
            .arg(format!("docker://{chunked}"))
            .arg(format!("oci:{}:v1", back2.display())),
    );
    assert_eq!(layout_manifest(&back2), manifest);
}

#[test]
fn promote_carries_the_image_and_tags_it_with_the_channel() {
    let p = Project::new();
    let reg = Registry::start();
    let repo = format!("{}/team/svc", reg.host);
    let mut c = p.cairn();
    c.env("CAIRN_REGISTRY_USER", USER)
        .env("CAIRN_REGISTRY_PASSWORD", PASSWORD)
        .args([
            "promote",
            &p.release,
            "--channel",
            "prod",
            "--key",
            "ci",
            "--push-image",
            &repo,
        ]);
    run_ok(&mut c);
    let digest = run_ok(
        Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                "--creds",
                &reg.creds(),
                "--format",
                "{{.Digest}}",
            ])
            .arg(format!("docker://{repo}:prod")),
    );
    let built = p.json(&[
        "image",
        "build",
        &p.release,
        "--output",
        p.tmp.path().join("img").to_str().unwrap(),
    ]);
    assert_eq!(digest, built["manifest"].as_str().unwrap());
}

#[test]
fn push_and_verify_through_a_registry_that_hands_out_bearer_tokens() {
    let p = Project::new();
    let reg = Registry::start_with_token_issuer();
    let repo = format!("{}/team/hello", reg.host);

    // No credentials: the issuer refuses, and so does the push.
    let err = refused(p.run(&["image", "push", &p.release, &repo, "--key", "ci"]));
    assert!(
        err.contains(&repo) && err.contains("/token: HTTP 401"),
        "{err}"
    );
    assert!(
        reg.issuer_requests()
            .contains("GET /token authenticated=False"),
        "the push never asked the issuer: {}",
        reg.issuer_requests()
    );

    // A wrong password: refused too, with the same exit status.
    let mut wrong = p.cairn();
    wrong
        .env("CAIRN_REGISTRY_USER", USER)
        .env("CAIRN_REGISTRY_PASSWORD", "not-the-password")
        .args(["image", "push", &p.release, &repo, "--key", "ci"]);
    let err = refused(wrong.output().unwrap());
    assert!(
        err.contains(&repo) && err.contains("/token: HTTP 401"),
        "{err}"
    );

    // The right one: a token for push and pull, and the image lands.
    let pushed = p.with_login(&[
        "image",
        "push",
        &p.release,
        &format!("{repo}:v1"),
        "--key",
        "ci",
    ]);
    let manifest = pushed["manifest"].as_str().unwrap().to_string();
    assert!(
        reg.issuer_requests()
            .contains("GET /token authenticated=True"),
        "{}",
        reg.issuer_requests()
    );

    // skopeo, which speaks the token protocol on its own, reads it back.
    let back = p.tmp.path().join("back");
    reg.copy_back(&format!("{repo}:v1"), &back);
    assert_eq!(layout_manifest(&back), manifest);

    // And `image verify` pulls the attestation with a pull token.
    let policy = p.policy("ci");
    let accepted = p.with_login(&[
        "image",
        "verify",
        &format!("{repo}:v1"),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(accepted["accepted"], true);
    assert_eq!(accepted["manifest"], manifest.as_str());
}
