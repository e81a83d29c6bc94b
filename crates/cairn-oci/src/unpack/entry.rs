//! Applying one tar entry of a layer: path checks, whiteouts, and the
//! kinds of entry a tree can hold (see the parent module for the rules).

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::LayerError;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Applies the entries of one layer below `dest`.
pub(super) struct Applier<'a> {
    pub(super) dest: &'a Path,
    /// Paths (relative) this layer created: whiteouts leave them alone.
    pub(super) created: HashSet<PathBuf>,
    /// The symlinks of the image so far, by relative path.
    pub(super) links: &'a mut cairn_tree::LinkTree,
    /// The sizes of the files this layer's hard links name, added up: each
    /// link is a file of its own once the root is a tree.
    pub(super) linked: u64,
}

impl Applier<'_> {
    fn hostile(entry: &str, reason: impl Into<String>) -> LayerError {
        LayerError::Hostile {
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }

    fn io(path: &Path) -> impl FnOnce(io::Error) -> LayerError {
        let path = path.to_owned();
        move |source| LayerError::Io { path, source }
    }

    pub(super) fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), LayerError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw_bytes = entry.path_bytes().into_owned();
        let raw = String::from_utf8(raw_bytes).map_err(|e| {
            Self::hostile(&String::from_utf8_lossy(e.as_bytes()), "path is not UTF-8")
        })?;
        // The root directory itself, as umoci writes it: nothing to do.
        if kind == EntryType::Directory && raw.trim_end_matches('/').is_empty() {
            return Ok(());
        }
        let parts = components(&raw, &raw)?;
        let Some((name, parents)) = parts.split_last() else {
            return match kind {
                EntryType::Directory => Ok(()),
                _ => Err(Self::hostile(&raw, "empty path")),
            };
        };
        let parent = self.make_parents(&raw, parents)?;
        let rel: PathBuf = parts.iter().collect();
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            return self.whiteout(&raw, &parent, parents, hidden);
        }
        let path = parent.join(name);
        match kind {
            EntryType::Directory => self.make_dir(&raw, &path, &rel),
            EntryType::Regular | EntryType::Continuous => {
                self.replace(&raw, &path, &rel)?;
                self.write_file(entry, &path)
            }
            EntryType::Symlink => {
                let target = link_name(entry, &raw)?;
                self.replace(&raw, &path, &rel)?;
                let key = parts.join("/");
                self.links.insert(&key, &target);
                if self.links.resolve(&key) == cairn_tree::Resolution::Escapes {
                    return Err(Self::hostile(
                        &raw,
                        format!("symlink target {target:?} points outside the image"),
                    ));
                }
                std::os::unix::fs::symlink(&target, &path).map_err(Self::io(&path))
            }
            EntryType::Link => {
                let target = link_name(entry, &raw)?;
                let source = self.hard_link_source(&raw, &target)?;
                let size = fs::symlink_metadata(&source).map_err(Self::io(&source))?;
                self.linked = self.linked.saturating_add(size.len());
                self.replace(&raw, &path, &rel)?;
                fs::hard_link(&source, &path).map_err(Self::io(&path))
            }
            other => Err(Self::hostile(
                &raw,
                format!("entries of type {other:?} (devices, fifos, …) are not allowed"),
            )),
        }
    }

    /// Handles `.wh.NAME` in the directory `parent`.
    fn whiteout(
        &mut self,
        raw: &str,
        parent: &Path,
        parents: &[String],
        hidden: &str,
    ) -> Result<(), LayerError> {
        let rel_parent: PathBuf = parents.iter().collect();
        if format!("{WHITEOUT}{hidden}") == OPAQUE {
            for child in fs::read_dir(parent).map_err(Self::io(parent))? {
                let child = child.map_err(Self::io(parent))?;
                let rel = rel_parent.join(child.file_name());
                if !self.created.contains(&rel) {
                    self.links.remove_under(&rel.to_string_lossy());
                    remove_any(&child.path()).map_err(Self::io(&child.path()))?;
                }
            }
            return Ok(());
        }
        if hidden.starts_with(WHITEOUT) {
            return Err(Self::hostile(
                raw,
                "reserved whiteout name (only .wh..wh..opq is known)",
            ));
        }
        if cairn_tree::validate_name(hidden).is_err() {
            return Err(Self::hostile(
                raw,
                format!("whiteout of {hidden:?}, which is not a plain name"),
            ));
        }
        let rel = rel_parent.join(hidden);
        if self.created.contains(&rel) {
            return Ok(()); // a whiteout hides lower layers only
        }
        let target = parent.join(hidden);
        self.links.remove_under(&rel.to_string_lossy());
        match fs::symlink_metadata(&target) {
            Ok(_) => remove_any(&target).map_err(Self::io(&target)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io(&target)(e)),
        }
    }

    /// Walks (creating as needed) `parents` below the destination; refuses
    /// to pass through anything but a real directory.
    fn make_parents(&mut self, raw: &str, parents: &[String]) -> Result<PathBuf, LayerError> {
        let mut dir = self.dest.to_owned();
        let mut rel = PathBuf::new();
        for p in parents {
            dir.push(p);
            rel.push(p);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Self::hostile(
                        raw,
                        format!(
                            "{} is not a directory (nothing is written through links)",
                            rel.display()
                        ),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    create_dir(&dir)?;
                    self.created.insert(rel.clone());
                }
                Err(e) => return Err(Self::io(&dir)(e)),
            }
        }
        Ok(dir)
    }

    fn make_dir(&mut self, raw: &str, path: &Path, rel: &Path) -> Result<(), LayerError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => {
                self.replace(raw, path, rel)?;
                create_dir(path)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.created.insert(rel.to_owned());
                create_dir(path)
            }
            Err(e) => Err(Self::io(path)(e)),
        }
    }

    /// Clears `path` for a new entry: what a lower layer put there goes
    /// (a file may replace a directory); a directory this layer made is an
    /// error, a file it made is replaced (later entries win, as in tar).
    fn replace(&mut self, raw: &str, path: &Path, rel: &Path) -> Result<(), LayerError> {
        let fresh = self.created.insert(rel.to_owned());
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() && !fresh => Err(Self::hostile(
                raw,
                format!("{} is already a directory of this layer", rel.display()),
            )),
            Ok(_) => {
                self.links.remove_under(&rel.to_string_lossy());
                remove_any(path).map_err(Self::io(path))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io(path)(e)),
        }
    }

    fn write_file<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
    ) -> Result<(), LayerError> {
        let mode = entry.header().mode().map_err(Self::io(path))?;
        let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
        // create_new: never opens (or follows) anything already there.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(Self::io(path))?;
        io::copy(entry, &mut file).map_err(Self::io(path))?;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(Self::io(path))
    }

    /// The file a hard link entry points at: a regular file already in the
    /// destination, reached through real directories only.
    fn hard_link_source(&self, raw: &str, target: &str) -> Result<PathBuf, LayerError> {
        let parts = components(raw, target)?;
        let mut source = self.dest.to_owned();
        for (i, p) in parts.iter().enumerate() {
            source.push(p);
            let last = i + 1 == parts.len();
            let ok = fs::symlink_metadata(&source).is_ok_and(|m| {
                if last {
                    m.is_file()
                } else {
                    m.is_dir()
                }
            });
            if !ok {
                return Err(Self::hostile(
                    raw,
                    format!("hard link target {target:?} is not a file unpacked before it"),
                ));
            }
        }
        if parts.is_empty() {
            return Err(Self::hostile(raw, "hard link with an empty target"));
        }
        Ok(source)
    }
}

fn create_dir(path: &Path) -> Result<(), LayerError> {
    fs::create_dir(path).map_err(Applier::io(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(Applier::io(path))
}

fn remove_any(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// The plain components of a path in a layer; `.` is dropped, anything
/// else that is not a valid tree name is refused.
fn components(entry: &str, path: &str) -> Result<Vec<String>, LayerError> {
    if path.starts_with('/') {
        return Err(Applier::hostile(
            entry,
            format!("path {path:?} is absolute"),
        ));
    }
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(Applier::hostile(
                    entry,
                    format!("path {path:?} contains `..`"),
                ))
            }
            name => {
                cairn_tree::validate_name(name)
                    .map_err(|e| Applier::hostile(entry, e.to_string()))?;
                parts.push(name.to_owned());
            }
        }
    }
    Ok(parts)
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, raw: &str) -> Result<String, LayerError> {
    let name = entry
        .link_name_bytes()
        .ok_or_else(|| Applier::hostile(raw, "link without a target"))?;
    String::from_utf8(name.into_owned())
        .map_err(|_| Applier::hostile(raw, "link target is not UTF-8"))
}
