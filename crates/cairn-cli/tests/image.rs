//! OCI images end to end, checked by tools nobody on this project wrote:
//! Debian's `docker-registry` (the CNCF distribution registry) on a
//! loopback port with htpasswd auth or the Docker token protocol, `skopeo` copying what cairn pushed,
//! `umoci` making and unpacking images, and `podman` running one.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/busybox-hello");
const GREETING: &str = "Hello from a hermetic busybox build!";
const USER: &str = "cairn-ci";
const PASSWORD: &str = "s3cret-for-tests";
const ISSUER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/token-issuer.py"
);

/// A `docker-registry` on a free loopback port, with basic auth or with
/// the token protocol; killed (by its pid, with its token issuer) when
/// dropped.
struct Registry {
    child: Child,
    issuer: Option<Child>,
    host: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Basic auth against an htpasswd file.
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let hash = run_ok(Command::new("python3").args([
            "-c",
            "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
            PASSWORD,
        ]));
        std::fs::write(dir.path().join("htpasswd"), format!("{USER}:{hash}\n")).unwrap();
        let auth = format!(
            "auth:\n  htpasswd:\n    realm: cairn-tests\n    path: {}\n",
            dir.path().join("htpasswd").display()
        );
        Self::launch(dir, &auth, None)
    }

    /// The Docker token protocol: the registry answers 401 with a Bearer
    /// challenge naming a token issuer (tests/fixtures/token-issuer.py),
    /// which takes the user's Basic credentials and hands out a signed JWT
    /// that the registry checks against the issuer's certificate.
    fn start_with_token_issuer() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut issuer = Command::new("python3")
            .arg(ISSUER)
            .arg(dir.path())
            .args([USER, PASSWORD])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 starts the token issuer");
        let mut port = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(issuer.stdout.take().unwrap()),
            &mut port,
        )
        .unwrap();
        let port: u16 = port.trim().parse().expect("the issuer prints its port");
        let auth = format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    service: cairn-test-registry\n    issuer: cairn-test-issuer\n    rootcertbundle: {}\n",
            dir.path().join("issuer.pem").display()
        );
        Self::launch(dir, &auth, Some(issuer))
    }

    fn launch(dir: tempfile::TempDir, auth: &str, issuer: Option<Child>) -> Self {
        // docker-registry cannot listen on port 0: take a free port and
        // hand it over (the window is a few milliseconds).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n{auth}",
            dir.path().join("data").display(),
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (apt-get install docker-registry)");
        let registry = Self {
            child,
            issuer,
            host,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&registry.host).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn creds(&self) -> String {
        format!("{USER}:{PASSWORD}")
    }

    /// skopeo copies `reference` (REPO:TAG here) into an OCI layout at
    /// `dir`, tagged with the same tag.
    fn copy_back(&self, reference: &str, dir: &Path) {
        let tag = reference.rsplit_once(':').unwrap().1;
        run_ok(
            Command::new("skopeo")
                .args([
                    "copy",
                    "--src-tls-verify=false",
                    "--src-creds",
                    &self.creds(),
                ])
                .arg(format!("docker://{reference}"))
                .arg(format!("oci:{}:{tag}", dir.display())),
        );
    }

    /// What the token issuer was asked, one line a request.
    fn issuer_requests(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.child).chain(self.issuer.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("starting a tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// busybox-hello released into a fresh store, with key `ci`.
struct Project {
    tmp: tempfile::TempDir,
    store: PathBuf,
    keys: PathBuf,
    project: PathBuf,
    release: String,
}

impl Project {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("busybox-hello");
        std::fs::create_dir_all(project.join("src")).unwrap();
        for file in ["cairn.toml", "make-rootfs.sh", "src/greeting.txt"] {
            std::fs::copy(Path::new(EXAMPLE).join(file), project.join(file)).unwrap();
        }
        let mut p = Self {
            store: tmp.path().join("store"),
            keys: tmp.path().join("keys"),
            project,
            tmp,
            release: String::new(),
        };
        run_ok(
            Command::new("sh")
                .arg(p.project.join("make-rootfs.sh"))
                .env("CAIRN", CAIRN)
                .env("CAIRN_STORE", &p.store),
        );
        p.ok(&["key", "generate", "ci"]);
        p.ok(&["key", "generate", "other"]);
        p.release = p.ok(&["release", "--key", "ci"]);
        p
    }

    fn cairn(&self) -> Command {
        let mut c = Command::new(CAIRN);
        c.arg("--store")
            .arg(&self.store)
            .arg("--keys")
            .arg(&self.keys)
            .current_dir(&self.project)
            .env_remove("CAIRN_STORE")
            .env_remove("CAIRN_REGISTRY_USER")
            .env_remove("CAIRN_REGISTRY_PASSWORD");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cairn().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        run_ok(self.cairn().args(args))
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn with_login(&self, args: &[&str]) -> serde_json::Value {
        let mut c = self.cairn();
        c.env("CAIRN_REGISTRY_USER", USER)
            .env("CAIRN_REGISTRY_PASSWORD", PASSWORD)
            .arg("--json")
            .args(args);
        serde_json::from_str(&run_ok(&mut c)).unwrap()
    }

    fn key_id(&self, name: &str) -> String {
        let keys = self.json(&["key", "list"]);
        let key = keys
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == name)
            .unwrap();
        key["key_id"].as_str().unwrap().to_string()
    }

    fn policy(&self, key: &str) -> PathBuf {
        let path = self.tmp.path().join(format!("policy-{key}.toml"));
        let text = format!(
            "[[channel]]\nservice = \"busybox-hello\"\nchannel = \"prod\"\nkeys = [\"{}\"]\nthreshold = 1\n",
            self.key_id(key)
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Exit status 1 and the one-line message.
fn refused(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

/// The manifest digest `index.json` of a layout names first.
fn layout_manifest(dir: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every file below `dir` with its bytes, by relative path.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

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

/// An image made by umoci from `dir`, as a layout; returns its digest.
fn umoci_image(layout: &Path, dir: &Path) -> String {
    run_ok(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    let image = format!("{}:x", layout.display());
    run_ok(Command::new("umoci").args(["new", "--image", &image]));
    run_ok(
        Command::new("umoci")
            .args(["insert", "--rootless", "--image", &image])
            .arg(dir)
            .arg("/"),
    );
    layout_manifest(layout)
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
