//! The file-level pieces of the keyring: exclusive creation with a mode,
//! permission checks, and reading a one-line key file with line numbers.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use cairn_trust::key::validate_key_name;
use cairn_trust::KeyError;

use crate::KeyringError;

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> KeyringError + 'a {
    move |source| KeyringError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), KeyringError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create directory", dir))
}

/// Writes `line` and a newline to `path` with `mode`. Without `force` the
/// file is created with `O_EXCL`; with it an existing file is truncated
/// and its mode reset (it may have been loose).
pub(crate) fn write_new(
    path: &Path,
    line: &str,
    mode: u32,
    force: bool,
) -> Result<(), KeyringError> {
    let mut options = OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists => KeyringError::Exists { path: path.into() },
        _ => io("create", path)(e),
    })?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io("set permissions of", path))?;
    file.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io("write", path))
}

/// Refuses a secret key file that is missing or accessible by group or
/// others.
pub(crate) fn check_private(path: &Path, name: &str) -> Result<(), KeyringError> {
    let meta = match fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let dir = path.parent().unwrap_or(Path::new("."));
            return Err(KeyringError::NotFound {
                name: name.into(),
                dir: dir.into(),
                known: public_key_names(dir).unwrap_or_default(),
            });
        }
        other => other.map_err(io("inspect", path))?,
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyringError::LoosePermissions {
            path: path.into(),
            mode,
        });
    }
    Ok(())
}

/// Reads a key file that must hold exactly one non-blank line and parses
/// it with `parse`, reporting the file and line on failure.
pub(crate) fn read_key_line<T>(
    path: &Path,
    parse: impl Fn(&str) -> Result<(String, T), KeyError>,
) -> Result<T, KeyringError> {
    let text = fs::read_to_string(path).map_err(io("read", path))?;
    let malformed = |line, source| KeyringError::Malformed {
        path: path.into(),
        line,
        source,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((index, first)) = lines.next() else {
        return Err(malformed(1, KeyError::Empty));
    };
    if let Some((extra, _)) = lines.next() {
        return Err(malformed(extra + 1, KeyError::ExtraLine));
    }
    let (_, key) = parse(first.trim()).map_err(|e| malformed(index + 1, e))?;
    Ok(key)
}

/// Names `N` of the `N.pub` files in `dir` (none if `dir` is missing),
/// skipping names that are not valid key names.
pub(crate) fn public_key_names(dir: &Path) -> Result<Vec<String>, KeyringError> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.map_err(io("list", dir))?,
    };
    let mut names = Vec::new();
    for entry in entries {
        let path: PathBuf = entry.map_err(io("list", dir))?.path();
        let is_pub = path.extension().is_some_and(|e| e == "pub");
        let stem = path.file_stem().and_then(|s| s.to_str());
        // Files whose names cannot be key names were not written by us.
        if let (true, Some(stem)) = (is_pub, stem.filter(|s| validate_key_name(s).is_ok())) {
            names.push(stem.to_owned());
        }
    }
    Ok(names)
}
