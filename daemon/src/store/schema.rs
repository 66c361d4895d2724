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
    // The durations of each task's last nine successful runs, newest in s0: read once per
    // workflow when a run starts, so that read follows the workflow's size and not the length
    // of its history. Filled from the history kept so far.
    "CREATE TABLE task_durations (
        workflow TEXT NOT NULL,
        task TEXT NOT NULL,
        s0 INTEGER, s1 INTEGER, s2 INTEGER, s3 INTEGER, s4 INTEGER, s5 INTEGER, s6 INTEGER, s7 INTEGER, s8 INTEGER,
        PRIMARY KEY (workflow, task)
    );
    INSERT INTO task_durations (workflow, task, s0, s1, s2, s3, s4, s5, s6, s7, s8)
    SELECT workflow, task,
        MAX(CASE WHEN n = 1 THEN d END),
        MAX(CASE WHEN n = 2 THEN d END),
        MAX(CASE WHEN n = 3 THEN d END),
        MAX(CASE WHEN n = 4 THEN d END),
        MAX(CASE WHEN n = 5 THEN d END),
        MAX(CASE WHEN n = 6 THEN d END),
        MAX(CASE WHEN n = 7 THEN d END),
        MAX(CASE WHEN n = 8 THEN d END),
        MAX(CASE WHEN n = 9 THEN d END)
    FROM (
        SELECT workflow, task, finished_at - started_at AS d,
               ROW_NUMBER() OVER (PARTITION BY workflow, task ORDER BY rowid DESC) AS n
        FROM tasks
        WHERE state = 'succeeded' AND started_at IS NOT NULL AND finished_at IS NOT NULL
    )
    WHERE n <= 9
    GROUP BY workflow, task;",
    // Set when the destroy of a removed task timed out: later deploys report it instead of
    // destroying it again, until `gantry forget`.
    "ALTER TABLE deployments ADD COLUMN cleanup_pending TEXT;",
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
