//! The `log` capability: plugin log lines into the task's log, under a byte budget. Every
//! plugin has it; it also links the contract's shared `types`.

use std::sync::{Arc, Mutex};

use wasmtime::component::HasSelf;

use super::CallState;
use super::capability::{CallBuilder, Capability, GrantRequest, Resolution};
use crate::wasm::bindings::log::{Host, Level};
use crate::wasm::bindings::{Linkers, v1, v2};

pub struct LogCapability;

impl Capability for LogCapability {
    fn name(&self) -> &'static str {
        "log"
    }

    fn link(&self, linkers: &mut Linkers) -> anyhow::Result<()> {
        for linker in linkers.each() {
            v1::task::gantry::plugin::types::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)?;
            v1::task::gantry::plugin::log::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)?;
            v2::types::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)?;
            v2::log::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)?;
        }
        Ok(())
    }

    fn resolve(&self, _request: &GrantRequest<'_>) -> Resolution {
        Resolution::default()
    }

    fn prepare(&self, _call: &mut CallBuilder<'_>) -> anyhow::Result<()> {
        // The log budget is part of every call's state (`CallState::log`).
        Ok(())
    }
}

impl v2::types::Host for CallState {}

/// Where a task's log lines go (tracing, the run's log file, a test's buffer).
pub trait LogSink: Send + Sync {
    fn line(&self, level: Level, message: &str, fields: &[(String, String)]);
}

/// Longest single message kept; longer ones are cut with a note.
const MAX_MESSAGE: usize = 8 * 1024;

/// Counts what a call logged and drops lines past its budget, saying so once.
pub struct LogBudget {
    sink: Arc<dyn LogSink>,
    used: usize,
    max: usize,
    pub dropped: u64,
}

impl LogBudget {
    pub fn new(sink: Arc<dyn LogSink>, max: usize) -> Self {
        LogBudget {
            sink,
            used: 0,
            max,
            dropped: 0,
        }
    }

    pub fn write(&mut self, level: Level, message: &str, fields: &[(String, String)]) {
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if self.used + size > self.max {
            if self.dropped == 0 {
                self.sink.line(
                    Level::Warn,
                    &format!(
                        "plugin log exceeded {} bytes; further lines are dropped",
                        self.max
                    ),
                    &[],
                );
            }
            self.dropped += 1;
            return;
        }
        self.used += size;
        // One call, one line: a newline in a message or field cannot forge another.
        let message = crate::logging::escape_control(message);
        let message = message.as_ref();
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| {
                (
                    crate::logging::escape_control(k).into_owned(),
                    crate::logging::escape_control(v).into_owned(),
                )
            })
            .collect();
        let fields = fields.as_slice();
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            let cut = format!("{}… ({} bytes cut)", &message[..end], message.len() - end);
            self.sink.line(level, &cut, fields);
        } else {
            self.sink.line(level, message, fields);
        }
    }

    /// The note for the end of the call, if lines were dropped.
    pub fn summary(&self) -> Option<String> {
        (self.dropped > 0).then(|| {
            format!(
                "{} log lines dropped after the {}-byte log limit",
                self.dropped, self.max
            )
        })
    }

    pub fn sink(&self) -> &Arc<dyn LogSink> {
        &self.sink
    }
}

impl Host for super::CallState {
    async fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        self.log.write(level, &message, &fields);
        Ok(())
    }
}

/// Sends plugin log lines to `tracing`, tagged with the run and task.
pub struct TracingSink {
    pub run_id: String,
    pub task: String,
}

impl LogSink for TracingSink {
    fn line(&self, level: Level, message: &str, fields: &[(String, String)]) {
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let (run, task) = (&self.run_id, &self.task);
        match level {
            Level::Trace => tracing::trace!(run, task, fields, "{message}"),
            Level::Debug => tracing::debug!(run, task, fields, "{message}"),
            Level::Info => tracing::info!(run, task, fields, "{message}"),
            Level::Warn => tracing::warn!(run, task, fields, "{message}"),
            Level::Error => tracing::error!(run, task, fields, "{message}"),
        }
    }
}

/// Keeps log lines in memory: for tests and for `plugin check`.
#[derive(Default)]
pub struct MemorySink {
    lines: Mutex<Vec<(Level, String)>>,
}

impl MemorySink {
    pub fn lines(&self) -> Vec<(Level, String)> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl LogSink for MemorySink {
    fn line(&self, level: Level, message: &str, _fields: &[(String, String)]) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push((level, message.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message and its fields, as the sink received them.
    type Line = (String, Vec<(String, String)>);

    #[derive(Default)]
    struct Raw(Mutex<Vec<Line>>);

    impl LogSink for Raw {
        fn line(&self, _level: Level, message: &str, fields: &[(String, String)]) {
            if let Ok(mut lines) = self.0.lock() {
                lines.push((message.to_string(), fields.to_vec()));
            }
        }
    }

    #[test]
    fn a_newline_cannot_forge_a_line() {
        let raw = Arc::new(Raw::default());
        let mut budget = LogBudget::new(raw.clone(), 1 << 20);
        budget.write(
            Level::Info,
            "deployed\n2026-11-24T00:00:00Z ERROR forged",
            &[("k".into(), "v\r\nINFO also forged".into())],
        );
        let lines = raw.0.lock().unwrap().clone();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].0, "deployed\\n2026-11-24T00:00:00Z ERROR forged");
        assert_eq!(lines[0].1[0].1, "v\\r\\nINFO also forged");
    }
}
