//! `[history]` retention: finished runs past their age or count leave the store, and their
//! task logs leave the state directory with them, and so do the scratch directories earlier
//! versions made per run (scratch directories are now a pool shared by runs).

use std::path::Path;

use crate::config::daemon::HistorySettings;
use crate::store::Store;

/// Runs pruned per store transaction, so a first prune of a long history does not hold the
/// store (and the runs writing to it) for long.
const BATCH: usize = 500;

/// Prunes what `settings` no longer keeps; how many runs went.
pub fn prune(store: &Store, state_dir: &Path, settings: &HistorySettings) -> usize {
    let age = i64::try_from(settings.max_age.as_millis()).unwrap_or(i64::MAX);
    let older_than = crate::store::now_millis().saturating_sub(age);
    let mut pruned = 0;
    loop {
        let ids = match store.prune(older_than, settings.max_runs, BATCH) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "could not prune the run history");
                return pruned;
            }
        };
        let logs = state_dir.join("logs");
        for id in &ids {
            if let Err(e) = crate::store::logs::remove_run(&logs, id) {
                tracing::warn!(run = %id, path = %logs.display(), error = %e, "could not remove a pruned run's log");
            }
            let scratch = state_dir.join("scratch").join(id);
            if let Err(e) = std::fs::remove_dir_all(&scratch)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %scratch.display(), error = %e, "could not remove a pruned run's scratch files");
            }
        }
        pruned += ids.len();
        if ids.len() < BATCH {
            break;
        }
    }
    if pruned > 0 {
        tracing::info!(
            runs = pruned,
            max_age = %humantime::format_duration(settings.max_age),
            max_runs = settings.max_runs,
            "pruned the run history"
        );
    }
    pruned
}
