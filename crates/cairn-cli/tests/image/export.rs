//! Exports: an image layout is the same bytes wherever, whenever and by
//! whomever it is made, and `podman` runs it.

use std::process::Command;
use std::time::Duration;

use crate::{files, layout_manifest, run_ok, umoci_image, Project, CAIRN, GREETING};

#[test]
fn exports_are_byte_identical_across_places_times_umasks_and_users() {
    let p = Project::new();
    let first = p.tmp.path().join("a/image");
    let built = p.json(&[
        "image",
        "build",
        &p.release,
        "--output",
        first.to_str().unwrap(),
    ]);
    // Another copy of the store, owned by another user, read from another
    // directory, a second later, with another umask, clock zone and
    // SOURCE_DATE_EPOCH in the environment.
    std::thread::sleep(Duration::from_millis(1100));
    let other = tempfile::Builder::new()
        .prefix("cairn-other-")
        .tempdir_in("/tmp")
        .unwrap();
    let store2 = other.path().join("store");
    run_ok(Command::new("cp").arg("-a").arg(&p.store).arg(&store2));
    // The other user runs its own copy of the binary: the checkout it was
    // built in may be a directory only its owner can traverse.
    let cairn2 = other.path().join("cairn");
    std::fs::copy(CAIRN, &cairn2).unwrap();
    run_ok(
        Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(other.path()),
    );
    let second = other.path().join("out/image");
    std::fs::create_dir_all(second.parent().unwrap()).unwrap();
    run_ok(
        Command::new("chown")
            .args(["65534:65534"])
            .arg(second.parent().unwrap()),
    );
    let script = format!(
        "umask 077; exec {} --store {} image build {} --output {}",
        cairn2.display(),
        store2.display(),
        p.release,
        second.display()
    );
    let out = run_ok(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                &script,
            ])
            .current_dir(other.path())
            .env("HOME", other.path())
            .env("TZ", "Pacific/Kiritimati")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env_remove("CAIRN_STORE"),
    );
    assert_eq!(out, built["manifest"].as_str().unwrap());
    assert_eq!(files(&first), files(&second));
    assert_eq!(layout_manifest(&first), built["manifest"].as_str().unwrap());

    // umoci, which nobody here wrote, reads the layout and unpacks it.
    let tag = run_ok(Command::new("python3").args([
        "-c",
        "import json,sys; print(json.load(open(sys.argv[1]))['manifests'][0]['annotations']['org.opencontainers.image.ref.name'])",
        first.join("index.json").to_str().unwrap(),
    ]));
    let bundle = p.tmp.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{tag}", first.display()))
            .arg(&bundle),
    );
    let hello = bundle.join("rootfs/bin/hello");
    assert!(std::fs::read_to_string(&hello)
        .unwrap()
        .starts_with("#!/bin/sh"));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["args"][0], "/bin/hello");
}

#[test]
fn podman_runs_the_image_of_busybox_hello() {
    let p = Project::new();
    let base = p.tmp.path().join("base");
    let base_digest = umoci_image(&base, &p.project.join("rootfs"));
    let img = p.tmp.path().join("img");
    let base_ref = format!("{}@{base_digest}", base.display());
    p.ok(&[
        "image",
        "build",
        &p.release,
        "--base",
        &base_ref,
        "--output",
        img.to_str().unwrap(),
    ]);
    // Into podman's storage under a name of our own (podman names an
    // `oci:` image after its path, which may not be a valid name).
    let name = format!("localhost/cairn-test/busybox-hello:{}", std::process::id());
    run_ok(
        Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}", img.display()))
            .arg(format!("containers-storage:{name}")),
    );
    // runc, not crun: this host's cgroup v2 hierarchy has a controller
    // (hugetlb) while the rest is v1, which crun refuses ("hybrid mode");
    // podman's default ulimits exceed the host's hard limits.
    let out = Command::new("podman")
        .args(["--runtime", "runc", "run", "--rm", "--network=none"])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .arg(&name)
        .output()
        .unwrap();
    let _ = Command::new("podman").args(["rmi", "-f", &name]).output();
    assert!(
        out.status.success(),
        "podman: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), GREETING);
}
