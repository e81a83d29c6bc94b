//! An image as a step's input: one `umoci` made is seen by the step, a
//! hostile one is refused naming it and its layer.

use std::process::Command;

use crate::{refused, run_ok, umoci_image, Project, Registry, PASSWORD, USER};

#[test]
fn an_image_made_by_umoci_is_an_input_a_step_sees() {
    let p = Project::new();
    let reg = Registry::start();
    let rootfs = p.tmp.path().join("rootfs");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(p.project.join("rootfs"))
            .arg(&rootfs),
    );
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/message"), "from an image\n").unwrap();
    let layout = p.tmp.path().join("img");
    let digest = umoci_image(&layout, &rootfs);
    run_ok(
        Command::new("skopeo")
            .args([
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &reg.creds(),
            ])
            .arg(format!("oci:{}:x", layout.display()))
            .arg(format!("docker://{}/base:x", reg.host)),
    );
    let step = "[steps.look]\nmounts = { \"/\" = \"base\" }\nenv = { PATH = \"/bin\" }\nrun = [\"/bin/sh\", \"-c\", \"cat /etc/message > /out/seen\"]\n";
    let recipe = |image: &str| {
        format!("[service]\nname = \"look\"\n\n[inputs.base]\noci = \"{image}\"\n\n{step}")
    };
    for image in [
        format!("../img@{digest}"),
        format!("{}/base@{digest}", reg.host),
    ] {
        let dir = p.tmp.path().join("use");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cairn.toml"), recipe(&image)).unwrap();
        let mut c = p.cairn();
        c.current_dir(&dir)
            .env("CAIRN_REGISTRY_USER", USER)
            .env("CAIRN_REGISTRY_PASSWORD", PASSWORD)
            .args(["--json", "build", "look"]);
        let built: serde_json::Value = serde_json::from_str(&run_ok(&mut c)).unwrap();
        let tree = built[0]["output"].as_str().unwrap().to_string();
        let out = p.tmp.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        p.ok(&["store", "checkout", &tree, out.to_str().unwrap()]);
        assert_eq!(
            std::fs::read_to_string(out.join("seen")).unwrap(),
            "from an image\n"
        );
    }
    let refs = p.ok(&["ref", "list", "oci/"]);
    assert_eq!(refs, format!("oci/{}", &digest["sha256:".len()..]));

    let dir = p.tmp.path().join("tagged");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("cairn.toml"),
        recipe(&format!("{}/base:x", reg.host)),
    )
    .unwrap();
    let out = p
        .cairn()
        .current_dir(&dir)
        .args(["build", "look"])
        .output()
        .unwrap();
    let err = refused(out);
    assert!(err.contains("is not pinned"), "{err}");
}

#[test]
fn a_hostile_image_is_refused_naming_it_and_its_layer_and_nothing_is_kept() {
    let p = Project::new();
    let layout = p.tmp.path().join("evil");
    let digest = umoci_image(&layout, &p.project.join("src"));
    // Append a layer with `../escaped` by hand (python's tarfile writes
    // what it is told), and point a new manifest at it.
    let script = r#"
import hashlib, io, json, os, sys, tarfile
root = sys.argv[1]
def put(b):
    h = hashlib.sha256(b).hexdigest()
    open(os.path.join(root, "blobs/sha256", h), "wb").write(b)
    return "sha256:" + h
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
    info = tarfile.TarInfo("../escaped"); data = b"out"; info.size = len(data)
    t.addfile(info, io.BytesIO(data))
layer = buf.getvalue(); ld = put(layer)
index = json.load(open(os.path.join(root, "index.json")))
m = json.load(open(os.path.join(root, "blobs/sha256", index["manifests"][0]["digest"][7:])))
c = json.load(open(os.path.join(root, "blobs/sha256", m["config"]["digest"][7:])))
c["rootfs"]["diff_ids"].append(ld)
cb = json.dumps(c).encode(); m["config"] = {"mediaType": m["config"]["mediaType"], "digest": put(cb), "size": len(cb)}
m["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": len(layer)})
print(put(json.dumps(m).encode()), ld)
"#;
    let out = run_ok(Command::new("python3").args(["-c", script]).arg(&layout));
    let (evil, layer) = out.split_once(' ').unwrap();
    assert_ne!(evil, digest);
    let dir = p.tmp.path().join("use");
    std::fs::create_dir_all(&dir).unwrap();
    let recipe = format!(
        "[service]\nname = \"look\"\n\n[inputs.base]\noci = \"../evil@{evil}\"\n\n[steps.look]\nmounts = {{ \"/\" = \"base\" }}\nrun = [\"/x\"]\n"
    );
    std::fs::write(dir.join("cairn.toml"), recipe).unwrap();
    let err = refused(
        p.cairn()
            .current_dir(&dir)
            .args(["build", "look"])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains(evil) && err.contains(&format!("layer {layer}")) && err.contains("`..`"),
        "{err}"
    );
    assert!(!p.tmp.path().join("escaped").exists() && !dir.join("escaped").exists());
    assert_eq!(p.ok(&["ref", "list", "oci/"]), "");
}
