//! Task logs: one append-only text file per run, `<state>/logs/<run>.log`, a line per log
//! line as `TIME LEVEL WORKFLOW/TASK message`. One file per run rather than one per task: a
//! task costs no inode of its own (creating thousands of files is much of a short task's
//! cost, and more after a prune on some file systems), the lines of a run read in the order
//! they happened, and showing a whole run's logs is one read. Runs recorded before this
//! layout kept a file per task, `<state>/logs/<run>/<workflow>/<task>.log`; they are still
//! read (and pruned).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::FileExt;
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
    /// never interleave; whether it was written. It runs on the async threads: it is one
    /// write of a few lines to the page cache (events, each a transaction, have a thread of
    /// their own).
    fn append(&self, text: &str) -> bool {
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
        let Handle::Open(file) = &mut *handle else {
            return false;
        };
        if let Err(e) = file.write_all(text.as_bytes()) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the run's log; task lines go to the daemon log only");
            *handle = Handle::Failed;
            return false;
        }
        true
    }

    fn open(&self) -> std::io::Result<File> {
        let open = || {
            OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&self.path)
        };
        let mut file = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                open()?
            }
            other => other?,
        };
        // A line cut short (a full disk, a daemon that stopped mid-write) is ended, so the
        // next line is not read as part of it.
        let len = file.metadata()?.len();
        let mut last = [0u8; 1];
        if len > 0 {
            file.read_exact_at(&mut last, len - 1)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(file)
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
        // Each line of the file is one line of one task: no control character of a message
        // or field can end it early or start another.
        let escape = crate::logging::escape_control;
        let fields: String = fields
            .iter()
            .map(|(k, v)| format!(" {}={}", escape(k), escape(v)))
            .collect();
        let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let mut text = String::new();
        // An empty message is one empty line, as a program's blank line is.
        for line in message.lines().chain(message.is_empty().then_some("")) {
            let _ = writeln!(
                text,
                "{stamp} {level:<5} {task} {line}{fields}",
                task = self.task,
                line = escape(line),
            );
        }
        if self.file.append(&text) {
            tracing::debug!(task = %self.task, "{message}");
        } else {
            tracing::info!(task = %self.task, "{message}");
        }
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

/// A run's log as it was when opened: its complete lines only (a line being written is
/// left for the next read).
pub enum RunLog {
    /// The run's file and how much of it to read.
    File { file: File, len: u64 },
    /// A run logged with a file per task, put together.
    Legacy(Vec<u8>),
}

impl RunLog {
    /// The log of `run` under the logs directory `dir`; empty for a run that logged nothing.
    pub fn open(dir: &Path, run: &str) -> std::io::Result<RunLog> {
        Ok(match open_complete(dir, run)? {
            Some((file, len)) => RunLog::File { file, len },
            None => RunLog::Legacy(legacy_run_log(&dir.join(run))?.into_bytes()),
        })
    }
}

/// The run's file and how much of it its complete lines take; `None` when it has none.
fn open_complete(dir: &Path, run: &str) -> std::io::Result<Option<(File, u64)>> {
    match File::open(FileLogs::run_path(dir, run)) {
        Ok(file) => {
            let len = complete_len(&file)?;
            Ok(Some((file, len)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// How much of `file` its complete lines take.
fn complete_len(file: &File) -> std::io::Result<u64> {
    let mut end = file.metadata()?.len();
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..usize::try_from(end - start).unwrap_or(0)];
        file.read_exact_at(part, start)?;
        if let Some(at) = part.iter().rposition(|&b| b == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The lines `workflow`/`task` logged in `run`, as `TIME LEVEL message`. It reads the run's
/// whole log: to show every task of a run, read its `RunLog` once instead.
pub fn task_log(dir: &Path, run: &str, workflow: &str, task: &str) -> std::io::Result<String> {
    let Some((file, len)) = open_complete(dir, run)? else {
        // A run logged with a file per task, or nothing.
        let legacy = dir.join(run).join(workflow).join(format!("{task}.log"));
        return match std::fs::read(legacy) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        };
    };
    let mut lines = std::io::BufReader::new(file.take(len));
    let mut out = String::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line)? == 0 {
            return Ok(out);
        }
        let text = String::from_utf8_lossy(&line);
        if let Some(parsed) = LogLine::parse(text.trim_end_matches('\n'))
            && parsed.workflow == workflow
            && parsed.task == task
        {
            out.push_str(&parsed.without_task());
            out.push('\n');
        }
    }
}

/// A run recorded with a file per task, read as one run log (task by task); what cannot be
/// read is left out.
fn legacy_run_log(run_dir: &Path) -> std::io::Result<String> {
    let mut out = String::new();
    let workflows = match std::fs::read_dir(run_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for workflow in workflows.flatten() {
        let Ok(tasks) = std::fs::read_dir(workflow.path()) else {
            continue;
        };
        for task in tasks.flatten() {
            let name = task.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".log")
                && let Ok(bytes) = std::fs::read(task.path())
            {
                let who = format!("{}/{id}", workflow.file_name().to_string_lossy());
                files.push((who, String::from_utf8_lossy(&bytes).into_owned()));
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

/// Removes what `run` logged (its file, or its directory of task files).
pub fn remove_run(dir: &Path, run: &str) -> std::io::Result<()> {
    let gone = |result: std::io::Result<()>| match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    let file = gone(std::fs::remove_file(FileLogs::run_path(dir, run)));
    let legacy = gone(std::fs::remove_dir_all(dir.join(run)));
    file.and(legacy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_log(dir: &Path, run: &str) -> std::io::Result<String> {
        Ok(match RunLog::open(dir, run)? {
            RunLog::File { file, len } => {
                let mut text = String::new();
                file.take(len).read_to_string(&mut text)?;
                text
            }
            RunLog::Legacy(text) => String::from_utf8(text).unwrap(),
        })
    }

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
    fn no_message_or_field_can_write_a_line_of_another_task() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let logs = FileLogs::new(dir.clone());
        let forged = "x\r2026-01-01T00:00:00.000Z INFO  app/jobs.b forged";
        logs.for_task("r1", "app", "jobs.a").line(
            Level::Info,
            "one\ntwo\u{1b}[31m",
            &[("k\n".into(), format!("v\n{forged}"))],
        );
        assert_eq!(task_log(&dir, "r1", "app", "jobs.b").unwrap(), "");
        let a = task_log(&dir, "r1", "app", "jobs.a").unwrap();
        assert_eq!(a.lines().count(), 2, "{a}");
        assert!(a.contains("two\\e[31m k\\n=v\\nx\\r2026"), "{a}");
    }

    #[test]
    fn a_line_cut_short_stays_apart_from_the_next_and_bad_bytes_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut cut = b"2026-01-01T00:00:00.000Z INFO  app/jobs.a caf\xc3".to_vec();
        std::fs::write(FileLogs::run_path(&dir, "r1"), &cut).unwrap();
        // A daemon started again appends to the same run's file.
        FileLogs::new(dir.clone())
            .for_task("r1", "app", "jobs.b")
            .line(Level::Info, "after", &[]);
        let b = task_log(&dir, "r1", "app", "jobs.b").unwrap();
        assert!(b.ends_with(" INFO  after\n"), "{b}");
        let a = task_log(&dir, "r1", "app", "jobs.a").unwrap();
        assert!(a.ends_with(" INFO  caf\u{fffd}\n"), "{a}");
        cut.extend_from_slice(b"\n");
        assert!(
            std::fs::read(FileLogs::run_path(&dir, "r1"))
                .unwrap()
                .starts_with(&cut)
        );
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
