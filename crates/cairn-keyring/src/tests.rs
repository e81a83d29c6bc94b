use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use super::*;

/// The key name used throughout.
const NAME: &str = "alice";
/// A fixed secret line (seed of 32 bytes of 1) for tests needing a known key.
const ALICE_SECRET_LINE: &str =
    "cairn-ed25519-secret:alice:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
/// The id of that key (see cairn-trust's fixtures).
const ALICE_KEY_ID: &str = "ed25519:34750f98bd59fcfc946da45aaabe933b";

fn keys() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    (tmp, dir)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn generate_writes_a_private_key_and_a_public_line() {
    let (_tmp, dir) = keys();
    let id = generate(&dir, NAME, false).unwrap();
    assert_eq!(mode(&dir.join("alice.key")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(load_signing(&dir, NAME).unwrap().key_id(), id);
    let line = export(&dir, NAME).unwrap();
    assert!(line.starts_with("cairn-ed25519-pub:alice:"), "{line}");
    assert_eq!(
        fs::read_to_string(dir.join("alice.pub")).unwrap(),
        line + "\n"
    );
}

#[test]
fn existing_key_is_refused_without_force() {
    let (_tmp, dir) = keys();
    let first = generate(&dir, NAME, false).unwrap();
    let err = generate(&dir, NAME, false).unwrap_err();
    assert!(
        matches!(&err, KeyringError::Exists { path } if path.ends_with("alice.key")),
        "{err}"
    );
    assert!(err.to_string().contains("without --force"), "{err}");
    assert_eq!(load_signing(&dir, NAME).unwrap().key_id(), first);
    let second = generate(&dir, NAME, true).unwrap();
    assert_ne!(first, second);
    assert_eq!(load_signing(&dir, NAME).unwrap().key_id(), second);
}

#[test]
fn force_tightens_a_loose_existing_file() {
    let (_tmp, dir) = keys();
    generate(&dir, NAME, false).unwrap();
    let path = dir.join("alice.key");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    generate(&dir, NAME, true).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn loose_permissions_are_refused() {
    let (_tmp, dir) = keys();
    generate(&dir, NAME, false).unwrap();
    let path = dir.join("alice.key");
    for loose in [0o640, 0o604, 0o660] {
        fs::set_permissions(&path, fs::Permissions::from_mode(loose)).unwrap();
        let err = load_signing(&dir, NAME).unwrap_err();
        assert!(matches!(err, KeyringError::LoosePermissions { mode, .. } if mode == loose));
    }
    let text = load_signing(&dir, NAME).unwrap_err().to_string();
    assert!(text.contains("alice.key has mode 660"), "{text}");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    assert!(load_signing(&dir, NAME).is_ok());
}

#[test]
fn malformed_key_file_names_file_and_line() {
    let (_tmp, dir) = keys();
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("alice.key");
    let cases = [
        (
            "\n\ncairn-ed25519-secret:alice:short\n",
            3,
            KeyError::BadMaterial,
        ),
        (
            &format!("{ALICE_SECRET_LINE}\nmore\n") as &str,
            2,
            KeyError::ExtraLine,
        ),
        ("", 1, KeyError::Empty),
    ];
    for (content, want_line, want) in cases {
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        match load_signing(&dir, NAME).unwrap_err() {
            KeyringError::Malformed {
                path: p,
                line,
                source,
            } => {
                assert_eq!((p, line, source), (path.clone(), want_line, want));
            }
            other => panic!("{other}"),
        }
    }
    fs::write(&path, "garbage\n").unwrap();
    let text = load_signing(&dir, NAME).unwrap_err().to_string();
    assert!(
        text.ends_with("alice.key:1: key line does not start with \"cairn-ed25519-secret:\""),
        "{text}"
    );
}

#[test]
fn missing_key_is_not_found() {
    let (_tmp, dir) = keys();
    assert!(matches!(
        load_signing(&dir, NAME),
        Err(KeyringError::NotFound { .. })
    ));
    assert!(matches!(
        export(&dir, NAME),
        Err(KeyringError::NotFound { .. })
    ));
}

#[test]
fn bad_names_are_refused() {
    let (_tmp, dir) = keys();
    for bad in ["", "../x", "a/b", "a b", ".."] {
        assert!(
            matches!(generate(&dir, bad, false), Err(KeyringError::BadName(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn list_reports_names_ids_and_secrets() {
    let (_tmp, dir) = keys();
    assert!(list(&dir).unwrap().is_empty());
    let bob = generate(&dir, "bob", false).unwrap();
    let alice_line = SigningKey::from_secret_line(ALICE_SECRET_LINE).unwrap().1;
    import(&dir, &alice_line.public_key().to_line(NAME).unwrap()).unwrap();
    fs::write(dir.join("notes.txt"), "ignored").unwrap();
    fs::write(dir.join("not a key.pub"), "ignored").unwrap();
    let entries = list(&dir).unwrap();
    let summary: Vec<_> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.key_id.as_str(), e.has_secret))
        .collect();
    assert_eq!(
        summary,
        [(NAME, ALICE_KEY_ID, false), ("bob", bob.as_str(), true)]
    );
    assert_eq!(public_keys(&dir).unwrap().len(), 2);
}

#[test]
fn import_export_round_trip_and_conflicts() {
    let (_tmp, src) = keys();
    let dst = src.with_file_name("other");
    let id = generate(&src, NAME, false).unwrap();
    let line = export(&src, NAME).unwrap();
    assert_eq!(
        import(&dst, &format!("{line}\n")).unwrap(),
        (NAME.to_owned(), id.clone())
    );
    assert_eq!(import(&dst, &line).unwrap().1, id, "re-import is a no-op");
    assert_eq!(export(&dst, NAME).unwrap(), line);
    // An imported key verifies but cannot sign, and says so.
    let err = load_signing(&dst, NAME).unwrap_err();
    assert!(matches!(err, KeyringError::PublicOnly { .. }), "{err}");
    assert!(
        err.to_string().contains("cannot sign") || err.to_string().contains("not sign"),
        "{err}"
    );
    let other = SigningKey::generate()
        .unwrap()
        .public_key()
        .to_line(NAME)
        .unwrap();
    let err = import(&dst, &other).unwrap_err();
    assert!(matches!(err, KeyringError::Conflict { existing, .. } if existing == id));
    assert!(matches!(
        import(&dst, "nonsense"),
        Err(KeyringError::Malformed { .. })
    ));
}

#[test]
fn keys_dir_resolution_order() {
    let flag = Some(PathBuf::from("/flag"));
    let env = Some(OsString::from("/env"));
    let home = Some(PathBuf::from("/home/u"));
    let resolve = |f: &Option<PathBuf>, e: &Option<OsString>, h: &Option<PathBuf>| {
        resolve_keys_dir(f.clone(), e.clone(), h.clone())
    };
    assert_eq!(resolve(&flag, &env, &home).unwrap(), PathBuf::from("/flag"));
    assert_eq!(resolve(&None, &env, &home).unwrap(), PathBuf::from("/env"));
    let empty = Some(OsString::new());
    assert_eq!(
        resolve(&None, &empty, &home).unwrap(),
        PathBuf::from("/home/u/.config/cairn/keys")
    );
    assert!(matches!(
        resolve(&None, &None, &None),
        Err(KeyringError::NoKeysDir)
    ));
}
