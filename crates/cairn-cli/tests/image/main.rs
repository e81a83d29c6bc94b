//! OCI images end to end, checked by tools nobody on this project wrote:
//! Debian's `docker-registry` (the CNCF distribution registry) on a
//! loopback port with htpasswd auth or the Docker token protocol, `skopeo` copying what cairn pushed,
//! `umoci` making and unpacking images, and `podman` running one.
//!
//! By theme: [`export`] (layouts byte for byte, and `podman` running one),
//! [`push`] (to a registry and back, promotion, bearer tokens), [`inputs`]
//! (an image as a step's input, a hostile one refused).

mod export;
mod inputs;
mod push;

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
