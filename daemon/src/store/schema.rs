//! Versioned schema migrations, tracked in `PRAGMA user_version`.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Each entry upgrades the schema by one version; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        workflows TEXT NOT NULL,
        state TEXT NOT NULL,
        trigger TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        finished_at INTEGER
    );
    CREATE TABLE tasks (
        run_id TEXT NOT NULL REFERENCES runs(id),
        workflow TEXT NOT NULL,
        task TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        started_at INTEGER,
        finished_at INTEGER,
        error TEXT,
        PRIMARY KEY (run_id, workflow, task)
    );
    CREATE TABLE attempts (
        run_id TEXT NOT NULL,
        workflow TEXT NOT NULL,
        task TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        error TEXT,
        PRIMARY KEY (run_id, workflow, task, attempt)
    );
    CREATE TABLE outputs (
        run_id TEXT NOT NULL,
        workflow TEXT NOT NULL,
        task TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (run_id, workflow, task, key)
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        workflow TEXT NOT NULL,
        task TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX events_by_run ON events (run_id, seq);
    CREATE TABLE deployments (
        workflow TEXT NOT NULL,
        task TEXT NOT NULL,
        kind TEXT NOT NULL,
        params TEXT NOT NULL,
        record TEXT NOT NULL,
        run_id TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (workflow, task)
    );",
    // Typical task durations are read per workflow, newest succeeded rows first.
    "CREATE INDEX tasks_by_workflow ON tasks (workflow, state);",
];

pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
