//! In-process measurements for `/metrics`: run, task and plugin-call durations as Prometheus
//! histograms. Totals by result come from the store instead, so they survive restarts.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::engine::runner::{
    DeploymentRecord, HookCall, HookVerdict, RollbackResult, TaskCall, TaskFailure, TaskRunner,
};

/// Upper bounds (seconds) for deployment-scale durations: runs and tasks.
const LONG: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
/// Upper bounds (seconds) for plugin calls, which range from microseconds to minutes.
const CALL: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0,
];

/// A cumulative histogram with fixed buckets; lock-free to observe.
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

pub struct Metrics {
    pub run_seconds: Histogram,
    pub task_seconds: Histogram,
    plugin_calls: Mutex<BTreeMap<&'static str, Histogram>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            run_seconds: Histogram::new(LONG),
            task_seconds: Histogram::new(LONG),
            plugin_calls: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    pub fn plugin_call(&self, operation: &'static str, d: Duration) {
        let mut calls = self
            .plugin_calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        calls
            .entry(operation)
            .or_insert_with(|| Histogram::new(CALL))
            .observe(d);
    }

    /// The histograms in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP gantry_run_duration_seconds Wall-clock time of finished runs.\n# TYPE gantry_run_duration_seconds histogram\n");
        self.run_seconds
            .render(out, "gantry_run_duration_seconds", "");
        out.push_str("# HELP gantry_task_duration_seconds Time from a task's first start to its end.\n# TYPE gantry_task_duration_seconds histogram\n");
        self.task_seconds
            .render(out, "gantry_task_duration_seconds", "");
        out.push_str("# HELP gantry_plugin_call_duration_seconds Latency of plugin calls by operation.\n# TYPE gantry_plugin_call_duration_seconds histogram\n");
        let calls = self
            .plugin_calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (op, h) in calls.iter() {
            h.render(
                out,
                "gantry_plugin_call_duration_seconds",
                &format!("operation=\"{op}\""),
            );
        }
    }
}

/// A [`TaskRunner`] that times every call into the runner it wraps.
pub struct Timed<R> {
    pub inner: R,
    pub metrics: std::sync::Arc<Metrics>,
}

impl<R: TaskRunner> Timed<R> {
    async fn time<T>(&self, op: &'static str, f: impl Future<Output = T>) -> T {
        let start = std::time::Instant::now();
        let out = f.await;
        self.metrics.plugin_call(op, start.elapsed());
        out
    }
}

impl<R: TaskRunner> TaskRunner for Timed<R> {
    async fn apply(&self, call: TaskCall) -> Result<DeploymentRecord, TaskFailure> {
        self.time("apply", self.inner.apply(call)).await
    }

    async fn rollback(&self, call: TaskCall) -> Result<RollbackResult, TaskFailure> {
        self.time("rollback", self.inner.rollback(call)).await
    }

    async fn destroy(&self, call: TaskCall) -> Result<(), TaskFailure> {
        self.time("destroy", self.inner.destroy(call)).await
    }

    async fn hook(&self, call: HookCall) -> Result<HookVerdict, TaskFailure> {
        self.time("hook", self.inner.hook(call)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_sum_is_in_seconds() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(2));
        let mut out = String::new();
        h.render(&mut out, "x", "op=\"a\"");
        assert!(out.contains("x_bucket{op=\"a\",le=\"0.1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{op=\"a\",le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{op=\"a\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_sum{op=\"a\"} 2.55\n"), "{out}");
        assert!(out.contains("x_count{op=\"a\"} 3\n"), "{out}");
    }
}
