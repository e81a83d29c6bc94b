//! Pushing ref changes of the local store to watchers, through inotify
//! (the `notify` crate). Every write renames a file into `refs/`, and every
//! delete removes one, so watching for those two is enough.

use std::path::PathBuf;

use futures::StreamExt;
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
            if let Some(name) = ref_name_of(&root, path) {
                if name.as_str().starts_with(&prefix_owned) {
                    let _ = tx.send(RefEvent { name });
                }
            }
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

fn watch_error(path: &std::path::Path, e: notify::Error) -> StoreError {
    StoreError::io("watching", path, std::io::Error::other(e.to_string()))
}
