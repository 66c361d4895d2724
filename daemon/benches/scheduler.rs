//! Scheduler cost and quality, in one run:
//! 1. overhead per task: 1,000 zero-length tasks through the full scheduler (events, caps,
//!    priorities), no plugin instantiation;
//! 2. 200 tasks of 50 ms in a random DAG under a cap of 7, against the lower bound
//!    max(critical path, total work / cap) and against running them one after another.
//!
//!     cargo bench -p gantry --bench scheduler

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry::config::workflow;
use gantry::engine::events::{Event, EventSink};
use gantry::engine::plan;
use gantry::engine::run::{RunOptions, execute};
use gantry::engine::runner::{
    DeploymentRecord, HookCall, HookVerdict, NoHistory, RollbackResult, TaskCall, TaskFailure,
    TaskRunner,
};
use tokio_util::sync::CancellationToken;

struct Sleeper(Duration);

impl TaskRunner for Sleeper {
    async fn apply(&self, _call: TaskCall) -> Result<DeploymentRecord, TaskFailure> {
        if !self.0.is_zero() {
            tokio::time::sleep(self.0).await;
        }
        Ok(DeploymentRecord::default())
    }
    async fn rollback(&self, _call: TaskCall) -> Result<RollbackResult, TaskFailure> {
        Ok(RollbackResult::RolledBack(DeploymentRecord::default()))
    }
    async fn destroy(&self, _call: TaskCall) -> Result<(), TaskFailure> {
        Ok(())
    }
    async fn hook(&self, _call: HookCall) -> Result<HookVerdict, TaskFailure> {
        Ok(HookVerdict::Proceed)
    }
}

/// Counts events, as a cheap stand-in for the store.
#[derive(Default)]
struct Count(std::sync::atomic::AtomicUsize);

impl EventSink for Count {
    fn emit(&self, _e: Event) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn toml(n: usize, parallelism: usize, deps: &BTreeMap<usize, Vec<usize>>) -> String {
    let mut t = format!("parallelism = {parallelism}\n");
    for i in 0..n {
        t.push_str(&format!("[jobs.t{i}]\nkind = \"exec\"\n"));
        if let Some(d) = deps.get(&i) {
            let list: Vec<String> = d.iter().map(|j| format!("\"jobs.t{j}\"")).collect();
            t.push_str(&format!("needs = [{}]\n", list.join(", ")));
        }
    }
    t
}

async fn run_once(text: &str, millis: u64) -> Duration {
    let wf = workflow::parse(Path::new("bench.toml"), text).expect("workflow");
    let plan = plan::compile(vec![wf]).expect("plan");
    let started = Instant::now();
    let report = execute(
        plan,
        Arc::new(Sleeper(Duration::from_millis(millis))),
        Arc::new(NoHistory),
        Arc::new(Count::default()),
        RunOptions::new("bench"),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(report.state.as_str(), "succeeded");
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // 1. Overhead per task.
    let flat = toml(1000, 7, &BTreeMap::new());
    let overhead = median((0..9).map(|_| rt.block_on(run_once(&flat, 0))).collect());
    println!(
        "1,000 zero-length tasks, cap 7: median {:.1} ms = {:.1} µs per task (target <= 100 µs)",
        overhead.as_secs_f64() * 1e3,
        overhead.as_secs_f64() * 1e6 / 1000.0
    );

    // 2. 200 tasks of 50 ms in a random DAG under cap 7.
    let mut rng = fastrand::Rng::with_seed(7);
    let n: usize = 200;
    let mut deps: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 1..n {
        let k = rng.usize(0..3);
        let mut d: Vec<usize> = (0..k).map(|_| rng.usize(i.saturating_sub(40)..i)).collect();
        d.sort_unstable();
        d.dedup();
        if !d.is_empty() {
            deps.insert(i, d);
        }
    }
    let mut depth = vec![1usize; n];
    for i in 0..n {
        if let Some(d) = deps.get(&i) {
            depth[i] = 1 + d.iter().map(|&j| depth[j]).max().unwrap_or(0);
        }
    }
    let task = Duration::from_millis(50);
    let critical = task * depth.iter().copied().max().unwrap_or(1) as u32;
    let by_cap = task * n.div_ceil(7) as u32;
    let bound = critical.max(by_cap);
    let serial = task * n as u32;
    let text = toml(n, 7, &deps);
    let wall = median((0..5).map(|_| rt.block_on(run_once(&text, 50))).collect());
    println!(
        "200 x 50 ms, random DAG, cap 7: median {:.0} ms; lower bound {:.0} ms (critical path {:.0} ms, work/cap {:.0} ms) -> {:.3}x (target <= 1.05x); serial {:.0} ms -> {:.1}x faster",
        wall.as_secs_f64() * 1e3,
        bound.as_secs_f64() * 1e3,
        critical.as_secs_f64() * 1e3,
        by_cap.as_secs_f64() * 1e3,
        wall.as_secs_f64() / bound.as_secs_f64(),
        serial.as_secs_f64() * 1e3,
        serial.as_secs_f64() / wall.as_secs_f64()
    );
}
