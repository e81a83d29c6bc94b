//! `cairn build` of hostile steps, end to end: what each attempt ends as,
//! the one-line error naming the limit, path or call, exit status 1, and
//! the terminal never receiving a step's escape sequences raw.

mod support;

use support::cli::text;
use support::project::Project;

/// A control character or escape sequence reached stderr raw.
fn has_raw_controls(text: &str) -> bool {
    text.chars()
        .any(|c| (c.is_control() && c != '\n') || ('\u{80}'..='\u{9f}').contains(&c))
}

#[test]
fn a_sparse_file_over_limits_out_fails_the_build_naming_it() {
    let p = Project::busybox(
        "truncate -s 1099511627776 $OUT/disk.img && echo small > $OUT/ok",
        "limits = { out = \"64MiB\" }",
    );
    let err = p.build_fails(&[]);
    assert!(err.contains("/out/disk.img"), "{err}");
    assert!(
        err.contains("1 TiB long") && err.contains("limits.out = 64 MiB"),
        "{err}"
    );
    assert!(err.contains("0 B allocated"), "{err}");
}

#[test]
fn filling_out_or_forking_without_end_names_the_limit() {
    let p = Project::busybox(
        "dd if=/dev/zero of=$OUT/big bs=1024 count=8192",
        "limits = { out = \"1MiB\" }",
    );
    let err = p.build_fails(&[]);
    assert!(err.contains("/out full (limits.out = 1 MiB)"), "{err}");

    let p = Project::busybox(
        "b() { b & b; }; b",
        "limits = { processes = 16 }\ntimeout = \"60s\"",
    );
    let started = std::time::Instant::now();
    let err = p.build_fails(&[]);
    assert!(
        err.contains("process limit (limits.processes = 16)"),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 30, "waited for the timeout");
}

#[test]
fn an_output_symlink_escaping_through_another_fails_the_build() {
    let p = Project::busybox(
        "mkdir -p $OUT/a/b/c && ln -s ../../.. $OUT/a/b/c/l && ln -s a/b/c/l/../../.. $OUT/up",
        "",
    );
    let err = p.build_fails(&[]);
    assert!(
        err.contains("/out/up -> a/b/c/l/../../.. leads outside /out"),
        "{err}"
    );
    let p = Project::busybox("ln -s /etc/passwd $OUT/passwd", "");
    let err = p.build_fails(&[]);
    assert!(err.contains("/out/passwd -> /etc/passwd"), "{err}");
}

#[test]
fn a_step_s_escape_sequences_never_reach_the_terminal_raw() {
    // OSC 0 (window title), OSC 8 (hyperlink), CSI (clear screen), a lone
    // CR, C1 CSI, a bidi override; then a failure, so the tail is shown.
    let script = r#"printf 'title\033]0;pwned\007 link\033]8;;http://x\033\\ clear\033[2J cr\rover c1\302\2332J bidi\342\200\256x\n'; exit 3"#;
    let p = Project::busybox(script, "");
    for args in [&[][..], &["-v"][..]] {
        let out = p.build(args);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(!has_raw_controls(&err), "raw control characters: {err:?}");
        assert!(err.contains("title\\x1b]0;pwned\\x07"), "{err}");
        assert!(
            err.contains("clear\\x1b[2J cr\\rover c1\\u{9b}2J bidi\\u{202e}x"),
            "{err}"
        );
    }
    // The kept log holds the raw bytes.
    let logs = p.store_dir().join("cache/logs");
    let log = std::fs::read_dir(&logs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(std::fs::read(log)
        .unwrap()
        .windows(4)
        .any(|w| w == b"\x1b[2J"));
}

#[test]
fn names_with_control_characters_are_escaped_everywhere() {
    let p = Project::busybox(r#"printf x > "$OUT/$(printf 'evil\033[2J\nname')""#, "");
    let out = p.build_json(&[]);
    let tree = out["output"].as_str().unwrap().to_owned();
    let listed = p.ok(&["store", "ls", &tree]);
    assert!(listed.contains("evil\\x1b[2J\\nname"), "{listed}");
    assert!(!has_raw_controls(&listed), "{listed:?}");
    // An error naming the file: checkout into a destination that has it.
    let dest = p.root.join("co");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("evil\x1b[2J\nname"), "").unwrap();
    let out = p
        .command(&["store", "checkout", &tree, dest.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(!has_raw_controls(&err), "{err:?}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// `kill -9` of `cairn build` while a step runs: the step dies with it
/// (its processes follow their parent), nothing of the step stays in
/// `$TMPDIR`, and the pool cgroup it ran in is empty and free for the
/// next step at once.
#[test]
fn a_killed_build_leaves_nothing_behind_once_the_next_one_runs() {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};
    let p = Project::busybox("sleep 120", "");
    let tmpdir = tempfile::tempdir().unwrap();
    let dir = p.dir.to_str().unwrap().to_owned();
    let mut cairn = p
        .command(&["build", "-C", &dir, "--no-cache"])
        .env("TMPDIR", tmpdir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The pool entry whose processes are this cairn's: its outer process
    // is cairn's child. Running: the outer process, pid 1 and the step.
    let ours = |procs: &Path| {
        let pids = std::fs::read_to_string(procs).unwrap_or_default();
        let parent_is_cairn = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.to_owned()))
                .and_then(|rest| rest.split_whitespace().nth(1).map(str::to_owned))
                == Some(cairn.id().to_string())
        };
        pids.lines().count() >= 3 && pids.lines().any(parent_is_cairn)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let entry: PathBuf = loop {
        let found = std::fs::read_dir("/sys/fs/cgroup/pids")
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|d| {
                d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("cairn-sandbox-pool-"))
            })
            .find(|d| ours(&d.join("cgroup.procs")));
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    let procs = entry.join("cgroup.procs");
    cairn.kill().unwrap();
    cairn.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&procs).is_ok_and(|t| !t.trim().is_empty()) {
        assert!(Instant::now() < deadline, "the step outlived cairn");
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<_> = std::fs::read_dir(tmpdir.path()).unwrap().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    // The entry is free: the killed cairn's lock went with it.
    let name = entry.file_name().unwrap();
    let lock = std::fs::File::open(Path::new("/sys/fs/cgroup/memory").join(name)).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .expect("the killed build's cgroup is still held");
    drop(lock);
    // The killed build's scratch (its log) is removed by the next build
    // in the same store, not left until a collection.
    p.write("cairn.toml", &p.recipe().replace("sleep 120", "true"));
    let out = p.build(&["--no-cache"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let left: Vec<_> = std::fs::read_dir(p.store_dir().join("cache/build"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "left in cache/build: {left:?}");
}

/// A step printing without end: stopped at `limits.log`, named, and the
/// log on the host's disk holds exactly the limit (before, it grew until
/// the timeout, and a step could `fallocate` its stdout to fill the disk
/// at once: it held the log file itself).
#[test]
fn printing_without_end_stops_at_the_log_limit() {
    let p = Project::busybox(
        "echo started; yes 0123456789abcdef",
        "limits = { log = \"1MiB\" }\ntimeout = \"120s\"",
    );
    let started = std::time::Instant::now();
    let err = p.build_fails(&[]);
    assert!(
        err.contains(
            "step `build` wrote more than its log limit (limits.log = 1 MiB) and was killed"
        ),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 60, "waited for the timeout");
    let logs: Vec<_> = std::fs::read_dir(p.store_dir().join("cache/logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = std::fs::read(&logs[0]).unwrap();
    assert_eq!(log.len(), 1 << 20);
    assert!(log.starts_with(b"started\n0123456789abcdef\n"));
    // Nothing else of the step stays in the store's scratch space.
    let left: Vec<_> = std::fs::read_dir(p.store_dir().join("cache/build"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// One line of 8 MiB without a newline: the terminal gets a cut line
/// naming how much was left out, live (`-v`) and in the failure's tail,
/// while the log keeps every byte.
#[test]
fn an_endless_line_is_cut_on_the_terminal_and_kept_whole_in_the_log() {
    let p = Project::busybox("head -c 8388608 /dev/zero | tr '\\0' a; exit 3", "");
    for args in [&[][..], &["-v"][..]] {
        let out = p.build(args);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.len() < 64 << 10, "{} bytes on stderr", err.len());
        assert!(err.contains("exited with code 3"), "{err}");
        assert!(err.contains("a… ("), "{err}");
        assert!(err.contains("more bytes in the log)"), "{err}");
    }
    let logs = p.store_dir().join("cache/logs");
    let log = std::fs::read_dir(&logs).unwrap().next().unwrap().unwrap();
    assert_eq!(log.metadata().unwrap().len(), 8 << 20);
}

/// Empty files without end in `/out`: kernel memory, counted against
/// `limits.memory`, and named as that limit even when the OOM killer
/// picks the sandbox's pid 1 instead of the step (it reported "sandbox
/// ended without reporting a status").
#[test]
fn empty_files_without_end_name_the_memory_limit() {
    let p = Project::busybox(
        "cd $OUT && seq 1 3000000 | xargs touch",
        "limits = { memory = \"48MiB\", out = \"16MiB\", tmp = \"16MiB\" }\ntimeout = \"120s\"",
    );
    let err = p.build_fails(&[]);
    assert!(
        err.contains("step `build` exceeded its memory limit (limits.memory = 48 MiB"),
        "{err}"
    );
}

/// What a tree cannot hold, and directories nested without end, fail the
/// build with one line naming the entry under `/out` (not a path of the
/// process reading it) and what it is.
#[test]
fn special_files_and_endless_nesting_in_out_are_named_under_out() {
    let p = Project::busybox("mkfifo $OUT/fifo", "");
    let err = p.build_fails(&[]);
    assert!(
        err.contains(
            "step `build`: /out/fifo: a FIFO; an output holds only files, directories and symlinks"
        ),
        "{err}"
    );
    assert!(!err.contains("/proc/self/fd"), "{err}");
    let p = Project::busybox(
        "cd $OUT && i=0 && while [ $i -lt 600 ]; do mkdir d && cd d && i=$((i+1)); done",
        "",
    );
    let err = p.build_fails(&[]);
    assert!(err.contains("step `build`: /out/d/d/d/d/"), "{err}");
    assert!(
        err.trim_end()
            .ends_with("…: directories nested deeper than 512"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Empty files without end in `/out` stop at `limits.out_files`, named.
#[test]
fn empty_files_without_end_stop_at_the_out_files_limit() {
    let p = Project::busybox(
        "cd $OUT && seq 1 5000 | xargs touch",
        "limits = { out_files = 2000 }",
    );
    let err = p.build_fails(&[]);
    assert!(
        err.contains(
            "step `build` failed with /out holding all the entries it may (limits.out_files = 2000)"
        ),
        "{err}"
    );
}

/// A writable mount's copy: bounded by `limits.tmp` (named), on a tmpfs
/// of its own that is unmounted and removed afterwards, and, when `cairn`
/// was killed, by the next build.
#[test]
fn a_writable_mount_cannot_fill_the_host_disk_and_leaves_nothing() {
    use std::time::{Duration, Instant};
    let writable =
        "mounts = { \"/\" = \"rootfs\", \"/src\" = { input = \"src\", writable = true } }";
    let recipe = |p: &Project, script: &str, extra: &str| {
        let text = p.recipe();
        let text = text
            .lines()
            .map(|l| match l {
                l if l.starts_with("mounts =") => writable.to_owned(),
                l if l.starts_with("run =") => {
                    format!("run = [\"/bin/sh\", \"-c\", '''{script}''']")
                }
                l => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        p.write("cairn.toml", &format!("{text}\n{extra}\n"));
    };
    let tmpdir = tempfile::tempdir().unwrap();
    let mounted = || {
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        table.contains(tmpdir.path().to_str().unwrap())
    };
    let left = || std::fs::read_dir(tmpdir.path()).unwrap().count();
    let p = Project::busybox("", "");
    recipe(
        &p,
        "dd if=/dev/zero of=/src/big bs=1M count=64",
        "limits = { tmp = \"8MiB\" }",
    );
    let out = p
        .command(&["build", "-C", p.dir.to_str().unwrap()])
        .env("TMPDIR", tmpdir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("step `build` failed with a writable mount full (limits.tmp = 8 MiB)"),
        "{err}"
    );
    assert_eq!(left(), 0, "left in TMPDIR");
    assert!(!mounted());

    // Killed while the step runs: the copy stays mounted until the next
    // build that makes copies.
    recipe(&p, "sleep 120", "");
    let mut cairn = p
        .command(&["build", "-C", p.dir.to_str().unwrap(), "--no-cache"])
        .env("TMPDIR", tmpdir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !mounted() {
        assert!(Instant::now() < deadline, "the copy was never mounted");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    cairn.kill().unwrap();
    cairn.wait().unwrap();
    assert!(
        mounted(),
        "nothing left to clean up: the test proves nothing"
    );
    recipe(&p, "echo ok > /src/new", "");
    let out = p
        .command(&["build", "-C", p.dir.to_str().unwrap()])
        .env("TMPDIR", tmpdir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!mounted(), "the killed build's copy is still mounted");
    assert_eq!(left(), 0, "left in TMPDIR");
}

#[test]
fn a_crashing_step_is_named_by_its_signal_and_cannot_lower_its_core_limit() {
    let p = Project::busybox("ulimit -c 0 || echo core-limit-kept >&2; kill -SEGV $$", "");
    let err = p.build_fails(&[]);
    assert!(
        err.contains("step `build` was killed by signal 11 (SIGSEGV)"),
        "{err}"
    );
    assert!(
        err.contains("| sh: error setting limit: Operation not permitted\n")
            && err.contains("| core-limit-kept"),
        "{err}"
    );
}

/// A fetch server at a public-looking address, in a network of the test's
/// own, redirects the fetch to a name that resolves to loopback: the build
/// fails naming the URL, the host, its address and why, and the loopback
/// server is never asked.
#[test]
fn a_public_fetch_origin_cannot_reach_loopback_through_a_name() {
    use cairn_testkit::network::{in_a_network_of_its_own, ok, redirect, serve};
    use std::sync::atomic::Ordering;

    let p = Project::busybox("true", "");
    in_a_network_of_its_own("127.0.0.1 inside.example\n", move |_| {
        let (inside, inside_hits) = serve("127.0.0.1", |_, _| ok(b"vendored\n"));
        let target = format!("http://inside.example:{}/blob", inside.port());
        let (origin, _) = serve("203.0.113.1", move |_, _| redirect(&target));
        let url = format!("http://{origin}/start");
        let digest = cairn_digest::Digest::of(b"vendored\n");
        let text = p.recipe().replace(
            "[steps.build]\nmounts = { \"/\" = \"rootfs\", \"/src\" = \"src\" }",
            &format!(
                "[inputs.vendor]\nurl = \"{url}\"\ndigest = \"{digest:#}\"\n\
                 [steps.build]\nmounts = {{ \"/\" = \"rootfs\", \"/src\" = \"vendor\" }}"
            ),
        );
        p.write("cairn.toml", &text);
        let err = p.build_fails(&[]);
        assert!(
            err.contains(&format!(
                "fetching {url}: refused to connect to inside.example (127.0.0.1): a public \
                 origin may not reach a loopback, private or link-local address"
            )),
            "{err}"
        );
        assert_eq!(
            inside_hits.load(Ordering::SeqCst),
            0,
            "loopback never asked"
        );
    });
}
