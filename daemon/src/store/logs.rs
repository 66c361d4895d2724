//! Task logs: one append-only text file per run, `<state>/logs/<run>.log`, a line per log
//! line as `TIME LEVEL WORKFLOW/TASK message`. One file per run rather than one per task: a
//! task costs no inode of its own (creating thousands of files is much of a short task's
//! cost, and more after a prune on some file systems), the lines of a run read in the order
//! they happened, and showing a whole run's logs is one read. Runs recorded before this
//! layout kept a file per task, `<state>/logs/<run>/<workflow>/<task>.log`; they are still
//! read (and pruned).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::host::LogSink;
use crate::wasm::bindings::log::Level;
use crate::wasm::task_runner::LogFactory;

/// Writes the runs' log files under `dir`, one open file per run that is logging.
pub struct FileLogs {
    dir: PathBuf,
    /// The file of each run with a task still logging; a run's file closes with its last sink.
    open: Mutex<HashMap<String, Weak<RunFile>>>,
}

impl FileLogs {
    pub fn new(dir: PathBuf) -> Self {
        FileLogs {
            dir,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The log file of `run` under the logs directory `dir`.
    pub fn run_path(dir: &Path, run: &str) -> PathBuf {
        dir.join(format!("{run}.log"))
    }

    fn run_file(&self, run: &str) -> Arc<RunFile> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = open.get(run).and_then(Weak::upgrade) {
            return file;
        }
        open.retain(|_, file| file.strong_count() > 0);
        let file = Arc::new(RunFile {
            path: Self::run_path(&self.dir, run),
            file: Mutex::new(Handle::Unopened),
        });
        open.insert(run.to_string(), Arc::downgrade(&file));
        file
    }
}

/// A run's log file, opened (and its directory made) at its first line, so a run that logs
/// nothing leaves no file.
struct RunFile {
    path: PathBuf,
    file: Mutex<Handle>,
}

enum Handle {
    Unopened,
    Open(File),
    /// Opening failed and was reported once; lines go to the daemon log only.
    Failed,
}

impl RunFile {
    /// Appends `text` (whole lines) in one write, so lines of tasks logging at the same time
    /// never interleave.
    fn append(&self, text: &str) {
        let mut handle = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*handle, Handle::Unopened) {
            *handle = match self.open() {
                Ok(file) => Handle::Open(file),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot open the run's log; task lines go to the daemon log only");
                    Handle::Failed
                }
            };
        }
        if let Handle::Open(file) = &mut *handle
            && let Err(e) = file.write_all(text.as_bytes())
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the run's log; task lines go to the daemon log only");
            *handle = Handle::Failed;
        }
    }

    fn open(&self) -> std::io::Result<File> {
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
        };
        match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                open()
            }
            other => other,
        }
    }
}

struct FileSink {
    file: Arc<RunFile>,
    /// `WORKFLOW/TASK`, the tag of each of the task's lines.
    task: String,
}

impl LogSink for FileSink {
    fn line(&self, level: Level, message: &str, fields: &[(String, String)]) {
        let level = match level {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        };
        let fields: String = fields.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let mut text = String::new();
        for line in message.lines() {
            text.push_str(&format!(
                "{stamp} {level:<5} {task} {line}{fields}\n",
                task = self.task
            ));
        }
        self.file.append(&text);
        tracing::debug!(task = %self.task, "{message}");
    }
}

impl LogFactory for FileLogs {
    fn for_task(&self, run: &str, workflow: &str, task: &str) -> Arc<dyn LogSink> {
        Arc::new(FileSink {
            file: self.run_file(run),
            task: format!("{workflow}/{task}"),
        })
    }
}

/// One line of a run's log.
#[derive(Debug, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// RFC 3339 with milliseconds, as written.
    pub stamp: &'a str,
    /// Upper case, as written (`INFO`, `WARN`, ...).
    pub level: &'a str,
    pub workflow: &'a str,
    pub task: &'a str,
    pub message: &'a str,
}

impl<'a> LogLine<'a> {
    /// Reads a line of a run's log; `None` for one that is not (cut short or not gantry's).
    pub fn parse(line: &'a str) -> Option<LogLine<'a>> {
        let (stamp, rest) = line.split_once(' ')?;
        let level = rest.get(..5)?.trim_end();
        let (who, message) = rest.get(6..)?.split_once(' ')?;
        let (workflow, task) = who.split_once('/')?;
        Some(LogLine {
            stamp,
            level,
            workflow,
            task,
            message,
        })
    }

    /// The millisecond since the epoch that the line was written at.
    pub fn at_millis(&self) -> Option<i64> {
        let at = humantime::parse_rfc3339(self.stamp).ok()?;
        let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
        i64::try_from(ms).ok()
    }

    /// The line as a one-task log shows it: `TIME LEVEL message`.
    pub fn without_task(&self) -> String {
        format!("{} {:<5} {}", self.stamp, self.level, self.message)
    }
}

/// The whole log of `run` under the logs directory `dir` (complete lines only: a line being
/// written is left for the next read); empty for a run that logged nothing.
pub fn run_log(dir: &Path, run: &str) -> std::io::Result<String> {
    match std::fs::read_to_string(FileLogs::run_path(dir, run)) {
        Ok(mut text) => {
            text.truncate(text.rfind('\n').map_or(0, |end| end + 1));
            Ok(text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => legacy_run_log(&dir.join(run)),
        Err(e) => Err(e),
    }
}

/// The lines `workflow`/`task` logged in `run`, as `TIME LEVEL message`.
pub fn task_log(dir: &Path, run: &str, workflow: &str, task: &str) -> std::io::Result<String> {
    let legacy = dir.join(run).join(workflow).join(format!("{task}.log"));
    if !FileLogs::run_path(dir, run).exists() && legacy.is_file() {
        return std::fs::read_to_string(legacy);
    }
    let mut out = String::new();
    for line in run_log(dir, run)?.lines() {
        if let Some(line) = LogLine::parse(line)
            && line.workflow == workflow
            && line.task == task
        {
            out.push_str(&line.without_task());
            out.push('\n');
        }
    }
    Ok(out)
}

/// A run recorded with a file per task, read as one run log (task by task).
fn legacy_run_log(run_dir: &Path) -> std::io::Result<String> {
    let mut out = String::new();
    let workflows = match std::fs::read_dir(run_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for workflow in workflows.flatten() {
        for task in std::fs::read_dir(workflow.path())?.flatten() {
            let name = task.file_name().to_string_lossy().into_owned();
            if let Some(task) = name.strip_suffix(".log") {
                let who = format!("{}/{task}", workflow.file_name().to_string_lossy());
                files.push((who, std::fs::read_to_string(workflow.path().join(&name))?));
            }
        }
    }
    files.sort();
    for (who, text) in files {
        for line in text.lines() {
            // `TIME LEVEL message` gains the task after its level.
            if let Some((stamp, rest)) = line.split_once(' ')
                && let Some(level) = rest.get(..5)
            {
                let message = rest.get(6..).unwrap_or_default();
                out.push_str(&format!("{stamp} {level} {who} {message}\n"));
            }
        }
    }
    Ok(out)
}

/// Removes what `run` logged.
pub fn remove_run(dir: &Path, run: &str) -> std::io::Result<()> {
    let gone = |result: std::io::Result<()>| match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    gone(std::fs::remove_file(FileLogs::run_path(dir, run)))?;
    gone(std::fs::remove_dir_all(dir.join(run)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(logs: &FileLogs, run: &str, workflow: &str, task: &str, message: &str) {
        logs.for_task(run, workflow, task)
            .line(Level::Info, message, &[]);
    }

    #[test]
    fn tasks_of_a_run_share_its_file_and_read_back_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let logs = FileLogs::new(dir.clone());
        write(&logs, "r1", "app", "jobs.a", "first of a");
        write(&logs, "r1", "app", "jobs.b", "  indented b");
        write(&logs, "r1", "app", "jobs.a", "two\nlines");
        write(&logs, "r2", "app", "jobs.a", "another run");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(names, ["r1.log", "r2.log"]);

        let a = task_log(&dir, "r1", "app", "jobs.a").unwrap();
        let messages: Vec<&str> = a.lines().map(|l| &l[31..]).collect();
        assert_eq!(messages, ["first of a", "two", "lines"], "{a}");
        assert!(a.lines().all(|l| l[24..31] == *" INFO  "), "{a}");
        let b = task_log(&dir, "r1", "app", "jobs.b").unwrap();
        assert!(b.ends_with(" INFO    indented b\n"), "{b}");
        assert_eq!(task_log(&dir, "r1", "app", "jobs.c").unwrap(), "");

        let whole = run_log(&dir, "r1").unwrap();
        let order: Vec<_> = whole
            .lines()
            .map(|l| {
                let l = LogLine::parse(l).unwrap();
                (l.task.to_string(), l.message.to_string())
            })
            .collect();
        assert_eq!(order[0], ("jobs.a".into(), "first of a".into()));
        assert_eq!(order[1], ("jobs.b".into(), "  indented b".into()));
        assert_eq!(order.len(), 4);
    }

    #[test]
    fn a_run_that_logs_nothing_leaves_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let logs = FileLogs::new(dir.clone());
        drop(logs.for_task("r1", "app", "jobs.a"));
        assert!(!dir.exists());
        assert_eq!(run_log(&dir, "r1").unwrap(), "");
    }

    #[test]
    fn a_line_being_written_is_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(
            FileLogs::run_path(&dir, "r1"),
            "2026-01-01T00:00:00.000Z INFO  app/jobs.a done\n2026-01-01T00:00:00.001Z INFO  app/jo",
        )
        .unwrap();
        assert_eq!(
            task_log(&dir, "r1", "app", "jobs.a").unwrap(),
            "2026-01-01T00:00:00.000Z INFO  done\n"
        );
    }

    #[test]
    fn a_run_with_a_file_per_task_is_still_read_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let task_dir = dir.join("r0").join("app");
        std::fs::create_dir_all(&task_dir).unwrap();
        std::fs::write(
            task_dir.join("jobs.a.log"),
            "2026-01-01T00:00:00.000Z WARN  old line\n",
        )
        .unwrap();
        assert_eq!(
            task_log(&dir, "r0", "app", "jobs.a").unwrap(),
            "2026-01-01T00:00:00.000Z WARN  old line\n"
        );
        let whole = run_log(&dir, "r0").unwrap();
        let line = LogLine::parse(whole.trim_end()).unwrap();
        assert_eq!(
            (line.workflow, line.task, line.level, line.message),
            ("app", "jobs.a", "WARN", "old line")
        );
        remove_run(&dir, "r0").unwrap();
        assert!(!dir.join("r0").exists());
        remove_run(&dir, "never").unwrap();
    }
}
