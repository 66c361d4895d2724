//! Durable history in SQLite (WAL): runs, tasks, attempts, outputs, events and the
//! deployments each task left behind (for pruning, rollback and cleanup). Opening a store
//! marks runs an earlier process left running as `interrupted`. Task logs are append-only
//! files beside the database (see [`logs`]).

pub mod logs;
mod schema;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::engine::events::{Event, EventKind, EventSink};
use crate::engine::runner::{Deployed, History};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the history database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("history database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(
        "history database {path} has schema version {found}, newer than this gantry ({supported}); upgrade gantry"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How many recent successful runs of a task its typical duration is the median of (the
/// columns `s0`..`s8` of `task_durations`).
const DURATION_SAMPLES: usize = 9;

pub struct Store {
    conn: Mutex<Connection>,
    dir: PathBuf,
}

/// A run as listed.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: String,
    pub workflows: Vec<String>,
    pub state: String,
    pub trigger: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    pub workflow: String,
    pub task: String,
    pub state: String,
    pub attempts: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    pub outputs: BTreeMap<String, String>,
    /// What the task's hooks decided, in order; kept from the run's events.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRow>,
}

/// One hook's decision about a task.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct HookRow {
    pub phase: String,
    pub hook: String,
    pub decision: String,
    #[serde(default, rename = "message", skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Which runs to list; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub before: Option<String>,
    pub state: Option<String>,
    pub workflow: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub runs: Vec<(String, i64)>,
    pub tasks: Vec<(String, i64)>,
    /// Runs by workflow and final state.
    pub workflow_runs: Vec<(String, String, i64)>,
    /// The end of each workflow's last successful run, in Unix milliseconds.
    pub last_success: Vec<(String, i64)>,
}

/// A unique run id that sorts by creation time and reads as one:
/// `r` + UTC time to the millisecond + `-` + a process-wide sequence number + random bits,
/// e.g. `r20250314120501123-00002a-9f3c`.
///
/// Within a process two ids never collide: they differ in the sequence number unless 2^24 ids
/// are made in one millisecond. The random suffix separates processes sharing a history (a
/// daemon and a later `gantry run`). Ids made by one process sort in the order they were made
/// (while the clock does not step back), and after ids of the earlier `r<seconds>-xxxx` form.
pub fn new_run_id() -> String {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    let stamp = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let compact: String = stamp.chars().filter(char::is_ascii_digit).collect();
    format!("r{compact}-{seq:06x}-{:04x}", fastrand::u16(..))
}

pub fn now_millis() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn millis(t: SystemTime) -> i64 {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens an existing history for reading only, beside whoever writes it; None when
    /// there is none yet. Nothing is migrated or marked.
    pub fn open_read_only(state_dir: &Path) -> Result<Option<Store>, StoreError> {
        let path = state_dir.join("gantry.db");
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Some(Store {
            conn: Mutex::new(conn),
            dir: state_dir.to_path_buf(),
        }))
    }

    /// Opens (creating or migrating) `<state_dir>/gantry.db`, and marks runs left running by
    /// an earlier process `interrupted`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir)?;
        // History may hold what tasks deployed: private to the daemon's user.
        std::fs::set_permissions(
            state_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        let path = state_dir.join("gantry.db");
        let mut conn = Connection::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&mut conn, &path)?;
        let now = now_millis();
        conn.execute(
            "UPDATE runs SET state = 'interrupted', finished_at = ?1 WHERE state IN ('queued', 'running')",
            params![now],
        )?;
        conn.execute(
            "UPDATE tasks SET state = 'interrupted', finished_at = ?1 WHERE state IN ('queued', 'running', 'cleaning_up')",
            params![now],
        )?;
        Ok(Store {
            conn: Mutex::new(conn),
            dir: state_dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(f(&conn)?)
    }

    pub fn create_run(
        &self,
        id: &str,
        workflows: &[String],
        trigger: &str,
    ) -> Result<(), StoreError> {
        let list = serde_json::to_string(workflows).unwrap_or_else(|_| "[]".into());
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (id, workflows, state, trigger, created_at) VALUES (?1, ?2, 'queued', ?3, ?4)",
                params![id, list, trigger, now_millis()],
            )
            .map(drop)
        })
    }

    /// Persists one event and the state change it stands for; returns its sequence number.
    pub fn record(&self, e: &Event) -> Result<i64, StoreError> {
        let body = serde_json::to_string(e).unwrap_or_default();
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = conn.transaction()?;
        let seq = write_event(&tx, e, &body)?;
        tx.commit()?;
        Ok(seq)
    }

    /// Persists events, each with its JSON form, in one transaction (one commit however many
    /// there are); returns their sequence numbers in order. All or none are stored.
    pub fn record_all(&self, events: &[(Event, String)]) -> Result<Vec<i64>, StoreError> {
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = conn.transaction()?;
        let seqs = events
            .iter()
            .map(|(e, body)| write_event(&tx, e, body))
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        tx.commit()?;
        Ok(seqs)
    }

    /// Runs and tasks by state, for metrics.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        self.with(|c| {
            let count = |sql: &str| -> rusqlite::Result<Vec<(String, i64)>> {
                let mut stmt = c.prepare(sql)?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            };
            Ok(Counts {
                runs: count("SELECT state, COUNT(*) FROM runs GROUP BY state ORDER BY state")?,
                tasks: count("SELECT state, COUNT(*) FROM tasks GROUP BY state ORDER BY state")?,
                workflow_runs: {
                    let mut stmt = c.prepare(
                        "SELECT w.value, r.state, COUNT(*) FROM runs r, json_each(r.workflows) w GROUP BY w.value, r.state ORDER BY w.value, r.state",
                    )?;
                    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                    rows.collect::<rusqlite::Result<_>>()?
                },
                last_success: count(
                    "SELECT w.value, MAX(r.finished_at) FROM runs r, json_each(r.workflows) w WHERE r.state = 'succeeded' AND r.finished_at IS NOT NULL GROUP BY w.value ORDER BY w.value",
                )?,
            })
        })
    }

    /// Newest first, up to `limit`, older than the run `filter.before`, matching the filters.
    pub fn runs(&self, limit: usize, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, workflows, state, trigger, created_at, finished_at FROM runs
                 WHERE (?1 IS NULL OR rowid < (SELECT rowid FROM runs WHERE id = ?1))
                   AND (?3 IS NULL OR state = ?3)
                   AND (?4 IS NULL OR EXISTS (SELECT 1 FROM json_each(runs.workflows) WHERE value = ?4))
                 ORDER BY rowid DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(
                params![filter.before, limit as i64, filter.state, filter.workflow],
                run_row,
            )?;
            rows.collect()
        })
    }

    /// Deletes finished runs that ended before `older_than` (Unix milliseconds) or beyond the
    /// newest `keep` runs, with their tasks, attempts, outputs and events, at most `batch`
    /// of them per call so the store is not held long; their ids, for their files.
    /// Deployments stay: they are what is deployed now, whichever run did it.
    pub fn prune(
        &self,
        older_than: i64,
        keep: usize,
        batch: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let ids: Vec<String> = c
                .prepare(
                    "SELECT id FROM runs
                     WHERE state NOT IN ('queued', 'running')
                       AND (COALESCE(finished_at, created_at) < ?1
                            OR rowid <= (SELECT rowid FROM runs ORDER BY rowid DESC LIMIT 1 OFFSET ?2))
                     ORDER BY rowid LIMIT ?3",
                )?
                .query_map(
                    params![older_than, i64::try_from(keep).unwrap_or(i64::MAX), i64::try_from(batch).unwrap_or(i64::MAX)],
                    |r| r.get(0),
                )?
                .collect::<rusqlite::Result<_>>()?;
            let tx = c.unchecked_transaction()?;
            for id in &ids {
                for table in ["tasks", "attempts", "outputs", "events"] {
                    tx.prepare_cached(&format!("DELETE FROM {table} WHERE run_id = ?1"))?
                        .execute(params![id])?;
                }
                tx.prepare_cached("DELETE FROM runs WHERE id = ?1")?
                    .execute(params![id])?;
            }
            tx.commit()?;
            Ok(ids)
        })
    }

    /// Stops tracking a task's deployment (`gantry forget`): it is neither destroyed nor
    /// rolled back from then on. False when nothing was recorded for it.
    pub fn forget(&self, workflow: &str, task: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let known: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM deployments WHERE workflow = ?1 AND task = ?2)",
                params![workflow, task],
                |r| r.get(0),
            )?;
            forget_deployment(c, workflow, task)?;
            Ok(known)
        })
    }

    /// The runs `name` may stand for: the newest for `latest`, the one with that id, or
    /// those whose id starts with it (at most two: one is an answer, two are ambiguous).
    pub fn runs_named(&self, name: &str) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            if name == "latest" {
                let mut stmt = c.prepare("SELECT id FROM runs ORDER BY rowid DESC LIMIT 1")?;
                return stmt.query_map([], |r| r.get(0))?.collect();
            }
            let mut stmt = c.prepare("SELECT id FROM runs WHERE id >= ?1 ORDER BY id LIMIT 2")?;
            let ids: Vec<String> = stmt
                .query_map(params![name], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(match ids.first() {
                Some(first) if first == name => vec![first.clone()],
                _ => ids.into_iter().filter(|id| id.starts_with(name)).collect(),
            })
        })
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        self.with(|c| {
            c.query_row("SELECT id, workflows, state, trigger, created_at, finished_at FROM runs WHERE id = ?1", params![id], run_row)
                .optional()
        })
    }

    pub fn tasks(&self, run: &str) -> Result<Vec<TaskRow>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT workflow, task, state, attempts, started_at, finished_at, error FROM tasks WHERE run_id = ?1 ORDER BY rowid",
            )?;
            let mut tasks: Vec<TaskRow> = stmt
                .query_map(params![run], |r| {
                    Ok(TaskRow {
                        workflow: r.get(0)?,
                        task: r.get(1)?,
                        state: r.get(2)?,
                        attempts: r.get(3)?,
                        started_at: r.get(4)?,
                        finished_at: r.get(5)?,
                        error: r.get(6)?,
                        outputs: BTreeMap::new(),
                        hooks: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let position: HashMap<(String, String), usize> = tasks
                .iter()
                .enumerate()
                .map(|(i, t)| ((t.workflow.clone(), t.task.clone()), i))
                .collect();
            let mut out = c.prepare("SELECT workflow, task, key, value FROM outputs WHERE run_id = ?1")?;
            let rows = out.query_map(params![run], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?)))?;
            for row in rows {
                let (w, t, k, v) = row?;
                if let Some(&i) = position.get(&(w, t)) {
                    tasks[i].outputs.insert(k, v);
                }
            }
            let mut hooks = c.prepare(
                "SELECT workflow, task, body FROM events WHERE run_id = ?1 AND kind = 'hook_decision' ORDER BY seq",
            )?;
            let rows = hooks.query_map(params![run], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })?;
            for row in rows {
                let (w, t, body) = row?;
                if let (Some(&i), Ok(hook)) =
                    (position.get(&(w, t)), serde_json::from_str::<HookRow>(&body))
                {
                    tasks[i].hooks.push(hook);
                }
            }
            Ok(tasks)
        })
    }

    /// Events of a run after sequence number `since`, as stored JSON, with their numbers.
    /// Events after `since`, of one run or (with `None`) of all runs, oldest first.
    pub fn events(&self, run: Option<&str>, since: i64) -> Result<Vec<(i64, String)>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT seq, body FROM events WHERE (?1 IS NULL OR run_id = ?1) AND seq > ?2 ORDER BY seq LIMIT 100000",
            )?;
            let rows = stmt.query_map(params![run, since], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// The sequence number of the newest event, 0 when there is none.
    pub fn last_seq(&self) -> Result<i64, StoreError> {
        self.with(|c| c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0)))
    }
}

/// The task's current deployment becomes `d`, sensitive values blanked.
fn save_deployment(
    c: &Connection,
    run: &str,
    workflow: &str,
    task: &str,
    d: &Deployed,
) -> rusqlite::Result<()> {
    let record = serde_json::to_string(&d.record.storable()).unwrap_or_default();
    // Once per succeeded task: the statement is cached on the connection.
    c.prepare_cached(
        "INSERT INTO deployments (workflow, task, kind, params, record, run_id, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (workflow, task) DO UPDATE SET kind = ?3, params = ?4, record = ?5, run_id = ?6, updated_at = ?7",
    )?
    .execute(params![workflow, task, d.kind, d.params.to_string(), record, run, now_millis()])
    .map(drop)
}

/// The task has nothing deployed any more (nor a history of durations).
fn forget_deployment(c: &Connection, workflow: &str, task: &str) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM deployments WHERE workflow = ?1 AND task = ?2")?
        .execute(params![workflow, task])?;
    c.prepare_cached("DELETE FROM task_durations WHERE workflow = ?1 AND task = ?2")?
        .execute(params![workflow, task])
        .map(drop)
}

/// Inserts one event and applies the state change it stands for, inside the caller's
/// transaction. Statements are cached on the connection: this runs for every event.
fn write_event(c: &Connection, e: &Event, body: &str) -> rusqlite::Result<i64> {
    let at = millis(e.at);
    let kind = serde_json::to_value(&e.kind)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str().map(str::to_string)))
        .unwrap_or_default();
    let (wf, task) = (
        e.workflow.as_deref().unwrap_or(""),
        e.task.as_deref().unwrap_or(""),
    );
    let exec = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> rusqlite::Result<()> {
        c.prepare_cached(sql)?.execute(params).map(drop)
    };
    exec(
        "INSERT INTO events (run_id, at, workflow, task, kind, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![e.run, at, wf, task, kind, body],
    )?;
    let seq = c.last_insert_rowid();
    let task_state = |state: &str| -> rusqlite::Result<()> {
        exec(
            "UPDATE tasks SET state = ?4, finished_at = ?5, error = COALESCE(NULLIF(?6, ''), error) WHERE run_id = ?1 AND workflow = ?2 AND task = ?3",
            params![e.run, wf, task, state, at, e.message],
        )
    };
    match &e.kind {
        EventKind::RunStarted => exec(
            "UPDATE runs SET state = 'running' WHERE id = ?1",
            params![e.run],
        )?,
        EventKind::RunFinished { state } => exec(
            "UPDATE runs SET state = ?2, finished_at = ?3 WHERE id = ?1",
            params![e.run, state.as_str(), at],
        )?,
        EventKind::TaskQueued => exec(
            "INSERT OR IGNORE INTO tasks (run_id, workflow, task, state) VALUES (?1, ?2, ?3, 'queued')",
            params![e.run, wf, task],
        )?,
        EventKind::TaskStarted { attempt } => {
            exec(
                "UPDATE tasks SET state = 'running', attempts = ?4, started_at = COALESCE(started_at, ?5) WHERE run_id = ?1 AND workflow = ?2 AND task = ?3",
                params![e.run, wf, task, attempt, at],
            )?;
            exec(
                "INSERT OR REPLACE INTO attempts (run_id, workflow, task, attempt, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![e.run, wf, task, attempt, at],
            )?;
        }
        EventKind::TaskRetrying { attempt, .. } => exec(
            "UPDATE attempts SET finished_at = ?5, error = ?6 WHERE run_id = ?1 AND workflow = ?2 AND task = ?3 AND attempt = ?4",
            params![e.run, wf, task, attempt - 1, at, e.message],
        )?,
        EventKind::TaskOutput { key, value, .. } => exec(
            "INSERT OR REPLACE INTO outputs (run_id, workflow, task, key, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.run, wf, task, key, value],
        )?,
        EventKind::TaskSucceeded => {
            task_state("succeeded")?;
            exec(
                "UPDATE attempts SET finished_at = ?4 WHERE run_id = ?1 AND workflow = ?2 AND task = ?3 AND finished_at IS NULL",
                params![e.run, wf, task, at],
            )?;
            // The newest duration goes to s0 and the older ones move along (the right-hand
            // sides read the row as it was).
            exec(
                "INSERT INTO task_durations (workflow, task, s0)
                 SELECT workflow, task, ?4 - started_at FROM tasks
                 WHERE run_id = ?1 AND workflow = ?2 AND task = ?3 AND started_at IS NOT NULL
                 ON CONFLICT (workflow, task) DO UPDATE SET s8 = s7, s7 = s6, s6 = s5, s5 = s4, s4 = s3, s3 = s2, s2 = s1, s1 = s0, s0 = excluded.s0",
                params![e.run, wf, task, at],
            )?;
        }
        EventKind::TaskFailed => {
            task_state("failed")?;
            exec(
                "UPDATE attempts SET finished_at = ?4, error = ?5 WHERE run_id = ?1 AND workflow = ?2 AND task = ?3 AND finished_at IS NULL",
                params![e.run, wf, task, at, e.message],
            )?;
        }
        EventKind::TaskSkipped => task_state("skipped")?,
        EventKind::TaskCancelled => task_state("cancelled")?,
        EventKind::TaskRolledBack { now } => {
            task_state("rolled_back")?;
            match now {
                Some(d) => save_deployment(c, &e.run, wf, task, d)?,
                None => forget_deployment(c, wf, task)?,
            }
        }
        // History learns of deployments from these events only.
        EventKind::TaskDeployed { deployed } => save_deployment(c, &e.run, wf, task, deployed)?,
        // A removed task shows in the run beside its tasks, with its own log.
        EventKind::CleanupStarted => exec(
            "INSERT OR IGNORE INTO tasks (run_id, workflow, task, state, attempts, started_at) VALUES (?1, ?2, ?3, 'cleaning_up', 1, ?4)",
            params![e.run, wf, task, at],
        )?,
        EventKind::CleanupDestroyed => {
            task_state("destroyed")?;
            forget_deployment(c, wf, task)?
        }
        EventKind::CleanupFailed => task_state("cleanup_failed")?,
        EventKind::CleanupPending => {
            exec(
                "INSERT OR IGNORE INTO tasks (run_id, workflow, task, state, started_at) VALUES (?1, ?2, ?3, 'cleanup_pending', ?4)",
                params![e.run, wf, task, at],
            )?;
            task_state("cleanup_pending")?;
            exec(
                "UPDATE deployments SET cleanup_pending = COALESCE(cleanup_pending, ?3) WHERE workflow = ?1 AND task = ?2",
                params![wf, task, format!("since run {}", e.run)],
            )?
        }
        _ => {}
    }
    Ok(seq)
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let workflows: String = r.get(1)?;
    Ok(RunRow {
        id: r.get(0)?,
        workflows: serde_json::from_str(&workflows).unwrap_or_default(),
        state: r.get(2)?,
        trigger: r.get(3)?,
        created_at: r.get(4)?,
        finished_at: r.get(5)?,
    })
}

impl EventSink for Store {
    fn emit(&self, event: Event) {
        if let Err(e) = self.record(&event).map(drop) {
            tracing::error!(error = %e, run = %event.run, "could not record an event");
        }
    }
}

impl History for Store {
    fn cleanup_pending(&self, workflow: &str) -> BTreeMap<String, String> {
        let rows = self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT task, cleanup_pending FROM deployments WHERE workflow = ?1 AND cleanup_pending IS NOT NULL",
            )?;
            let rows = stmt.query_map(params![workflow], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<BTreeMap<String, String>>>()
        });
        rows.unwrap_or_else(|e| {
            tracing::error!(error = %e, workflow, "could not read pending cleanups");
            BTreeMap::new()
        })
    }

    fn deployed(&self, workflow: &str) -> BTreeMap<String, Deployed> {
        let rows = self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT task, kind, params, record FROM deployments WHERE workflow = ?1",
            )?;
            let rows = stmt.query_map(params![workflow], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        });
        match rows {
            Ok(rows) => rows
                .into_iter()
                .map(|(task, kind, p, rec)| {
                    (
                        task,
                        Deployed {
                            kind,
                            params: serde_json::from_str(&p).unwrap_or_default(),
                            record: serde_json::from_str(&rec).unwrap_or_default(),
                        },
                    )
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, workflow, "could not read deployments");
                BTreeMap::new()
            }
        }
    }

    /// The median of each task's last [`DURATION_SAMPLES`] successful durations, kept per task
    /// in `task_durations` as tasks succeed: one read of one row per task, however long the
    /// workflow's history.
    fn typical_durations(&self, workflow: &str) -> HashMap<String, f64> {
        let rows = self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT task, s0, s1, s2, s3, s4, s5, s6, s7, s8 FROM task_durations WHERE workflow = ?1",
            )?;
            let rows = stmt.query_map(params![workflow], |r| {
                let mut samples = Vec::with_capacity(DURATION_SAMPLES);
                for i in 1..=DURATION_SAMPLES {
                    if let Some(ms) = r.get::<_, Option<i64>>(i)? {
                        samples.push(ms);
                    }
                }
                Ok((r.get::<_, String>(0)?, samples))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        });
        match rows {
            Ok(rows) => rows
                .into_iter()
                .filter_map(|(task, mut samples)| {
                    samples.sort_unstable();
                    let median = *samples.get(samples.len() / 2)?;
                    Some((task, median as f64 / 1000.0))
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, workflow, "could not read past task durations");
                HashMap::new()
            }
        }
    }
}
