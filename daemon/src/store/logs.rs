//! Task logs as append-only files: `<state>/logs/<run>/<workflow>/<task>.log`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::host::LogSink;
use crate::wasm::bindings::log::Level;
use crate::wasm::task_runner::LogFactory;

pub struct FileLogs {
    pub dir: PathBuf,
}

impl FileLogs {
    pub fn path(&self, run: &str, workflow: &str, task: &str) -> PathBuf {
        self.dir
            .join(run)
            .join(workflow)
            .join(format!("{task}.log"))
    }
}

struct FileSink {
    file: Mutex<Option<std::fs::File>>,
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
        if let Ok(mut guard) = self.file.lock()
            && let Some(file) = guard.as_mut()
        {
            for line in message.lines() {
                let _ = writeln!(file, "{stamp} {level:<5} {line}{fields}");
            }
        }
        tracing::debug!(task = %self.task, "{message}");
    }
}

impl LogFactory for FileLogs {
    fn for_task(&self, run: &str, workflow: &str, task: &str) -> Arc<dyn LogSink> {
        let path = self.path(run, workflow, task);
        // The directory exists for every task but the first of a workflow; asking first
        // avoids a mkdir that would lock the parent directory against the other tasks.
        let file = path
            .parent()
            .map(|dir| match dir.is_dir() {
                true => Ok(()),
                false => std::fs::create_dir_all(dir),
            })
            .and_then(Result::ok)
            .and_then(|()| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .ok()
            });
        if file.is_none() {
            tracing::warn!(path = %path.display(), "cannot open task log; lines go to the daemon log only");
        }
        Arc::new(FileSink {
            file: Mutex::new(file),
            task: format!("{workflow}/{task}"),
        })
    }
}
