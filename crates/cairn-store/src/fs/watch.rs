//! Pushing ref changes of the local store to watchers, through inotify
//! (the `notify` crate). Every write renames a file into `refs/`, and every
//! delete removes one, so watching for those two is enough.
//!
//! A ref written into a directory made just before it (the first ref
//! under a new prefix) can land before the recursive watch reaches that
//! directory: `notify` adds the watch only after it has handed the
//! directory's creation to us. So a new directory is also read, at once
//! and again a moment later (after the watch is surely in place), and
//! every ref found in it is reported; a ref reported twice is only read
//! twice.

use std::path::PathBuf;

use futures::StreamExt;
use notify::event::CreateKind;
use notify::{EventKind, RecursiveMode, Watcher};

use super::refs::ref_name_of;
use crate::error::{Result, StoreError};
use crate::refs::{RefEvent, RefWatch};

pub(super) fn watch_refs(refs_root: PathBuf, prefix: &str) -> Result<RefWatch> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let root = refs_root.clone();
    let prefix_owned = prefix.to_string();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if !matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
        ) {
            return;
        }
        for path in &event.paths {
            report(&root, &prefix_owned, &tx, path);
        }
        if matches!(event.kind, EventKind::Create(CreateKind::Folder)) {
            let (dirs, root) = (event.paths.clone(), root.clone());
            let (prefix, tx) = (prefix_owned.clone(), tx.clone());
            std::thread::spawn(move || {
                for pass in 0..2 {
                    if pass > 0 {
                        std::thread::sleep(RESCAN_AFTER);
                    }
                    for dir in &dirs {
                        each_file(dir, &|path| report(&root, &prefix, &tx, path));
                    }
                }
            });
        }
    })
    .map_err(|e| watch_error(&refs_root, e))?;
    watcher
        .watch(&refs_root, RecursiveMode::Recursive)
        .map_err(|e| watch_error(&refs_root, e))?;
    // The watcher lives as long as the stream.
    let stream = futures::stream::unfold((rx, watcher), |(mut rx, w)| async move {
        rx.recv().await.map(|ev| (Ok(ev), (rx, w)))
    });
    Ok(stream.boxed())
}

/// Sends the event of the ref at `path`, if it is one under `prefix`.
fn report(
    root: &std::path::Path,
    prefix: &str,
    tx: &tokio::sync::mpsc::UnboundedSender<RefEvent>,
    path: &std::path::Path,
) {
    if let Some(name) = ref_name_of(root, path) {
        if name.as_str().starts_with(prefix) {
            let _ = tx.send(RefEvent { name });
        }
    }
}

/// How long after a new directory appears it is read again.
const RESCAN_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// Calls `f` with every file under `dir` (not following symlinks).
fn each_file(dir: &std::path::Path, f: &dyn Fn(&std::path::Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => each_file(&entry.path(), f),
            Ok(t) if t.is_file() => f(&entry.path()),
            _ => {}
        }
    }
}

fn watch_error(path: &std::path::Path, e: notify::Error) -> StoreError {
    StoreError::io("watching", path, std::io::Error::other(e.to_string()))
}
