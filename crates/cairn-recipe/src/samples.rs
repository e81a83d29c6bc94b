//! Sample recipes, shared by tests here and in other crates.
//!
//! [`DESIGN_EXAMPLE`] is the example of the design brief (section 5) with
//! real digests; the others exercise one feature each.

/// A tree digest used by the samples.
pub const ROOTFS_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000001";

/// A fetched archive's digest used by the samples.
pub const VENDOR_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000002/4096";

/// The design brief's example recipe.
pub const DESIGN_EXAMPLE: &str = r#"[service]
name = "hello"

[inputs.src]                      # a path of the repository, snapshotted
path = "."
exclude = ["target", ".git"]

[inputs.rootfs]                   # a tree already in the store, pinned
tree = "sha256:0000000000000000000000000000000000000000000000000000000000000001"

[inputs.vendor]                   # a fixed-output fetch: bytes must match
url = "https://example.org/vendor.tar.gz"
digest = "sha256:0000000000000000000000000000000000000000000000000000000000000002/4096"
unpack = true

[steps.build]
mounts = { "/" = "rootfs", "/src" = "src" }  # input names, or "steps.NAME"
workdir = "/src"
run = ["/bin/sh", "-c", "make && cp app $OUT/"]
env = { PATH = "/bin:/usr/bin" }
timeout = "10m"

[release]
step = "build"                    # its /out is the artifact
[release.run]                     # runs in the artifact root; relative paths
command = ["bin/hello"]
sockets = ["http"]               # names; each agent binds them to addresses
health = { http = "/healthz", socket = "http", interval = "1s", deadline = "30s", bake = "5s" }
stop = { signal = "TERM", grace = "20s" }

[deploy]
strategy = "rolling"              # "at-once" | "rolling" | "canary"
max_unavailable = 1
"#;

/// A diamond of steps (`gen` → `lib`, `gen` → `docs`, both → `app`) plus an
/// unrelated step, with writable mounts, limits, outputs, canary and gates.
pub const DIAMOND: &str = r#"[service]
name = "diamond"

[inputs.src]
path = "."
gitignore = true

[inputs.rootfs]
tree = "sha256:0000000000000000000000000000000000000000000000000000000000000001"

[steps.gen]
mounts = { "/" = "rootfs", "/src" = { input = "src", writable = true } }
run = ["/bin/gen"]

[steps.lib]
mounts = { "/" = "rootfs", "/gen" = "steps.gen" }
run = ["/bin/make", "lib"]

[steps.docs]
mounts = { "/" = "rootfs", "/gen" = "steps.gen" }
run = ["/bin/make", "docs"]

[steps.app]
mounts = { "/" = "rootfs", "/lib" = "steps.lib", "/docs" = "steps.docs" }
run = ["/bin/make", "app"]
limits = { memory = "2GiB", processes = 256, open_files = 1024, tmp = "512MiB" }
outputs = ["bin/app", "share/doc"]

[steps.lint]
mounts = { "/" = "rootfs" }
run = ["/bin/lint"]

[release]
step = "app"
[release.run]
command = ["bin/app", "--serve"]
sockets = ["http", "admin"]
health = { tcp = "127.0.0.1:9000", deadline = "1m" }
env = { RUST_LOG = "info" }

[deploy]
strategy = "canary"
max_unavailable = 2
canary = { count = 2, bake = "10m" }
gates = [
  { fleet = "db/eu-1" },
  { freeze = { from = 2025-12-20T00:00:00Z, until = 2026-01-05T00:00:00Z } },
  { check = ["bin/ready"], timeout = "30s" },
]
"#;
