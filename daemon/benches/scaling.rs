//! How the costs grow with the size of a workflow: 1,000, 5,000 and 20,000 tasks (a random
//! DAG, tasks of 10 ms, parallelism 64), each size in a fresh process so its peak memory is
//! its own. Per size:
//! - `gantry validate` of the directory (a process, plugins from a warm cache): wall time,
//!   and its CPU time, which a busy machine disturbs less;
//! - time to first task: from starting a run to the first task's start, on the real store
//!   (events through the writer, history read for priorities), for 4 runs in a row on the
//!   same history, so a delay that grew with past runs would show;
//! - CPU per task of scheduling and recording (this process's user + system time over a run,
//!   the tasks themselves only sleep), and the run's length against its lower bound;
//! - peak resident memory of the process.
//!
//! Growth factors are per step (×5, then ×4 tasks); N log N growth would be about ×5.6 and
//! ×4.6 for totals, ×1.1 for figures per task.
//!
//!     cargo bench -p gantry --bench scaling

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gantry::config::workflow;
use gantry::engine::plan;
use gantry::engine::run::{RunOptions, execute};
use gantry::engine::runner::{
    DeploymentRecord, HookCall, HookVerdict, RollbackResult, TaskCall, TaskFailure, TaskRunner,
};
use gantry::store::Store;
use gantry::store::writer::EventWriter;
use tokio_util::sync::CancellationToken;

use support::*;

const SIZES: [usize; 3] = [1_000, 5_000, 20_000];
const PARALLELISM: usize = 64;
const RUNS: usize = 4;

/// Sleeps for the task's length; notes when the first task started.
struct Sleeper {
    task: Duration,
    first: std::sync::Mutex<Option<Instant>>,
    seen: AtomicBool,
}

impl TaskRunner for Sleeper {
    async fn apply(&self, _call: TaskCall) -> Result<DeploymentRecord, TaskFailure> {
        if !self.seen.swap(true, Ordering::Relaxed)
            && let Ok(mut first) = self.first.lock()
        {
            *first = Some(Instant::now());
        }
        tokio::time::sleep(self.task).await;
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

fn cpu_time() -> Duration {
    cpu_of(libc::RUSAGE_SELF)
}

/// User + system time of `who` (this process, or its waited-for children).
fn cpu_of(who: libc::c_int) -> Duration {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF and RUSAGE_CHILDREN are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// One size, in this process; prints one line of figures for the parent.
fn child(n: usize) {
    let dag = Dag::random(n, 11, Duration::from_millis(10));
    let text = dag.workflow(PARALLELISM, &["true", "{i}"]);
    let site = site(&["true"], "big", &text);
    // Warm the compiled-component cache, then time validation.
    let validate = || {
        timed(
            Command::new(env!("CARGO_BIN_EXE_gantry"))
                .args(["validate"])
                .arg(&site.config)
                .arg("--state")
                .arg(&site.state),
        )
    };
    validate();
    let children0 = cpu_of(libc::RUSAGE_CHILDREN);
    let validate_t = median((0..3).map(|_| validate()).collect());
    let validate_cpu = (cpu_of(libc::RUSAGE_CHILDREN) - children0) / 3;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(Store::open(&site.state).expect("store"));
    let wf = workflow::parse(&site.config.join("workflows/big.toml"), &text).expect("workflow");
    let mut first_task = Vec::new();
    let mut cpu = Vec::new();
    let mut makespan = Vec::new();
    for r in 0..RUNS {
        let plan = plan::compile(vec![wf.clone()]).expect("plan");
        let run = format!("run{r}");
        store
            .create_run(&run, &["big".into()], "bench")
            .expect("create run");
        let writer =
            Arc::new(EventWriter::start(store.clone(), Box::new(|_, _, _| {})).expect("writer"));
        let runner = Arc::new(Sleeper {
            task: dag.task,
            first: std::sync::Mutex::new(None),
            seen: AtomicBool::new(false),
        });
        let (cpu0, t0) = (cpu_time(), Instant::now());
        let report = rt.block_on(async {
            let report = execute(
                plan,
                runner.clone(),
                store.clone(),
                writer.clone(),
                RunOptions::new(run.clone()),
                CancellationToken::new(),
            )
            .await;
            writer.flush().await;
            report
        });
        makespan.push(t0.elapsed());
        cpu.push(cpu_time() - cpu0);
        assert_eq!(report.state.as_str(), "succeeded");
        let first = runner
            .first
            .lock()
            .ok()
            .and_then(|f| *f)
            .expect("a task started");
        first_task.push(first - t0);
    }
    let bound = dag.lower_bound(PARALLELISM);
    let firsts: Vec<String> = first_task
        .iter()
        .map(|d| format!("{:.1}", ms(*d)))
        .collect();
    println!(
        "FIGURES {n} {} {} {} {} {} {} {}",
        ms(validate_t),
        firsts.join(","),
        median(cpu).as_secs_f64() * 1e6 / n as f64,
        median(makespan).as_secs_f64() / bound.as_secs_f64(),
        peak_rss_mib(),
        ms(median(first_task)),
        ms(validate_cpu),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--size") {
        let n = args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .expect("--size N");
        child(n);
        return;
    }
    let me = std::env::current_exe().expect("own path");
    let mut rows: Vec<Vec<f64>> = Vec::new();
    println!(
        "scaling: random DAG, tasks of 10 ms, parallelism {PARALLELISM}; {RUNS} runs per size on one history"
    );
    println!(
        "  {:>7} {:>12} {:>10} {:>28} {:>14} {:>10} {:>10}",
        "tasks",
        "validate ms",
        "(CPU ms)",
        "first task ms, runs 1..4",
        "sched CPU µs/t",
        "x bound",
        "peak MiB"
    );
    for n in SIZES {
        let out = Command::new(&me)
            .args(["--size", &n.to_string()])
            .output()
            .expect("child");
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text.lines().find_map(|l| l.strip_prefix("FIGURES ")) else {
            panic!(
                "size {n} failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let f: Vec<&str> = line.split(' ').collect();
        println!(
            "  {:>7} {:>12} {:>10} {:>28} {:>14.1} {:>10.3} {:>10.1}",
            f[0],
            f[1].parse::<f64>()
                .map_or(f[1].to_string(), |v| format!("{v:.0}")),
            f[7].parse::<f64>()
                .map_or(f[7].to_string(), |v| format!("({v:.0})")),
            f[2],
            f[3].parse::<f64>().unwrap_or(0.0),
            f[4].parse::<f64>().unwrap_or(0.0),
            f[5].parse::<f64>().unwrap_or(0.0),
        );
        rows.push(
            f.iter()
                .map(|v| v.split(',').next().unwrap_or("0").parse().unwrap_or(0.0))
                .collect(),
        );
    }
    let growth = |col: usize, name: &str| {
        let steps: Vec<String> = rows
            .windows(2)
            .map(|w| format!("x{:.2}", w[1][col] / w[0][col].max(1e-9)))
            .collect();
        println!("  growth per step, {name:<26} {}", steps.join(", "));
    };
    growth(1, "validate:");
    growth(7, "validate CPU:");
    growth(6, "time to first task (median):");
    growth(3, "scheduling CPU per task:");
    growth(5, "peak memory:");
    if let Some(last) = rows.last() {
        println!(
            "  20,000 tasks validate in {:.0} ms (target < 1000 ms: {})",
            last[1],
            if last[1] < 1000.0 { "met" } else { "MISSED" }
        );
    }
}
