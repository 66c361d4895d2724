//! What the comparison benchmarks share: a random DAG of tasks, its bounds, its forms for
//! gantry, make and ninja, and ways to run gantry (`gantry run` and the daemon) on it.
#![allow(dead_code)]

#[allow(dead_code)]
#[path = "../../tests/common/daemon.rs"]
pub mod daemon;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Tasks `0..n`, each depending on a few earlier ones, all of the same length.
pub struct Dag {
    pub deps: Vec<Vec<usize>>,
    pub task: Duration,
}

impl Dag {
    /// Up to two dependencies per task, among the 40 before it (as the scheduler benchmark).
    pub fn random(n: usize, seed: u64, task: Duration) -> Dag {
        let mut rng = fastrand::Rng::with_seed(seed);
        let deps = (0..n)
            .map(|i| {
                if i == 0 {
                    return Vec::new();
                }
                let k = rng.usize(0..3);
                let mut d: Vec<usize> =
                    (0..k).map(|_| rng.usize(i.saturating_sub(40)..i)).collect();
                d.sort_unstable();
                d.dedup();
                d
            })
            .collect();
        Dag { deps, task }
    }

    pub fn independent(n: usize, task: Duration) -> Dag {
        Dag {
            deps: vec![Vec::new(); n],
            task,
        }
    }

    pub fn len(&self) -> usize {
        self.deps.len()
    }

    fn depth(&self) -> Vec<usize> {
        let mut depth = vec![1usize; self.len()];
        for i in 0..self.len() {
            depth[i] = 1 + self.deps[i].iter().map(|&j| depth[j]).max().unwrap_or(0);
        }
        depth
    }

    /// max(critical path, total work / cap): no schedule can beat it.
    pub fn lower_bound(&self, cap: usize) -> Duration {
        let critical = self.depth().into_iter().max().unwrap_or(0);
        self.task * critical.max(self.len().div_ceil(cap)) as u32
    }

    /// The makespan of the ideal greedy list schedule (longest remaining path first, no
    /// overhead at all): what a perfect scheduler of this kind reaches.
    pub fn greedy(&self, cap: usize) -> Duration {
        let n = self.len();
        let mut dependents = vec![Vec::new(); n];
        for (i, d) in self.deps.iter().enumerate() {
            for &j in d {
                dependents[j].push(i);
            }
        }
        let mut tail = vec![1usize; n];
        for i in (0..n).rev() {
            tail[i] = 1 + dependents[i].iter().map(|&d| tail[d]).max().unwrap_or(0);
        }
        let mut remaining: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
        let mut rounds = 0u32;
        let mut done = 0;
        // Equal lengths: every task starts at a multiple of the length.
        while done < n {
            ready.sort_by_key(|&i| (std::cmp::Reverse(tail[i]), i));
            let now: Vec<usize> = ready.drain(..cap.min(ready.len())).collect();
            rounds += 1;
            done += now.len();
            for t in now {
                for &d in &dependents[t] {
                    remaining[d] -= 1;
                    if remaining[d] == 0 {
                        ready.push(d);
                    }
                }
            }
        }
        self.task * rounds
    }

    /// One workflow; every task runs `command` through the exec kind (`{i}` in an argument
    /// becomes the task's number, so tasks can differ as real ones do).
    pub fn workflow(&self, parallelism: usize, command: &[&str]) -> String {
        let mut t = format!("parallelism = {parallelism}\n");
        for (i, d) in self.deps.iter().enumerate() {
            let args: Vec<String> = command
                .iter()
                .map(|c| format!("\"{}\"", c.replace("{i}", &i.to_string())))
                .collect();
            let _ = writeln!(
                t,
                "[jobs.t{i}]\nkind = \"exec\"\ncommand = [{}]",
                args.join(", ")
            );
            if !d.is_empty() {
                let list: Vec<String> = d.iter().map(|j| format!("\"jobs.t{j}\"")).collect();
                let _ = writeln!(t, "needs = [{}]", list.join(", "));
            }
        }
        t
    }

    /// Phony targets, so every run does all the work.
    pub fn makefile(&self, recipe: &str) -> String {
        let all: Vec<String> = (0..self.len()).map(|i| format!("t{i}")).collect();
        let mut t = format!(".PHONY: all {}\nall: {}\n", all.join(" "), all.join(" "));
        for (i, d) in self.deps.iter().enumerate() {
            let prereqs: Vec<String> = d.iter().map(|j| format!("t{j}")).collect();
            let _ = writeln!(t, "t{i}: {}\n\t@{recipe}", prereqs.join(" "));
        }
        t
    }

    /// Each edge touches its output; the build directory is removed before each run.
    pub fn ninja(&self, command: &str) -> String {
        let mut t = format!("rule run\n  command = {command} && touch $out\n");
        for (i, d) in self.deps.iter().enumerate() {
            let inputs: Vec<String> = d.iter().map(|j| format!("out/t{j}")).collect();
            let _ = writeln!(t, "build out/t{i}: run {}", inputs.join(" "));
        }
        t
    }
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Wall time of a command that must succeed.
pub fn timed(cmd: &mut Command) -> Duration {
    let t0 = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let took = t0.elapsed();
    assert!(status.success(), "{cmd:?}: {status}");
    took
}

/// The environment gantry gives the programs it runs (the system `PATH`, `LANG=C.UTF-8`, a
/// `HOME`), given to the other contenders' programs too: what a program does to start in it
/// (loading its locale files) is the program's own cost, not its starter's.
pub fn program_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8")
        .env("HOME", std::env::temp_dir())
}

pub fn make(dir: &Path, jobs: usize) -> Duration {
    timed(
        program_env(&mut Command::new("make"))
            .arg("-s")
            .arg(format!("-j{jobs}"))
            .arg("-C")
            .arg(dir),
    )
}

pub fn ninja(dir: &Path, jobs: usize) -> Duration {
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let _ = std::fs::remove_file(dir.join(".ninja_log"));
    std::fs::create_dir_all(dir.join("out")).expect("ninja out dir");
    timed(
        program_env(&mut Command::new("ninja"))
            .arg("-C")
            .arg(dir)
            .arg(format!("-j{jobs}"))
            .arg("--quiet"),
    )
}

/// Fails with the fix when a tool the comparison needs is missing.
pub fn require(tools: &[&str]) {
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{tool}` is missing; run scripts/setup-bench-tools.sh"
        );
    }
}

/// A gantry configuration directory holding one workflow.
pub fn site(grant: &[&str], name: &str, workflow: &str) -> daemon::Site {
    let programs: Vec<String> = grant.iter().map(|p| format!("\"{p}\"")).collect();
    let toml = format!("[plugins.exec]\nexec = [{}]\n", programs.join(", "));
    daemon::Site::new(&toml, &[(name, workflow)])
}

/// `gantry run NAME` in a fresh process: the process's wall time, and the run's own time
/// from `run_started` to `run_finished` as the store recorded them. It has a state
/// directory of its own, as a daemon may be serving the site's.
pub fn gantry_run(site: &daemon::Site, name: &str) -> (Duration, Duration) {
    let state = site.tmp.path().join("run-state");
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["run", name, "--config"])
        .arg(&site.config)
        .arg("--state")
        .arg(&state)
        .stdin(Stdio::null())
        .output()
        .expect("gantry run");
    let wall = t0.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gantry run {name}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("run ").and_then(|r| r.split(':').next()))
        .expect("run id")
        .to_string();
    (wall, run_span(&state, &id))
}

/// From `run_started` to `run_finished` in the store, to the millisecond.
pub fn run_span(state: &Path, run: &str) -> Duration {
    let db = rusqlite::Connection::open(state.join("gantry.db")).expect("open history");
    let at = |kind: &str| -> i64 {
        db.query_row(
            "SELECT at FROM events WHERE run_id = ?1 AND kind = ?2",
            rusqlite::params![run, kind],
            |r| r.get(0),
        )
        .expect("event")
    };
    Duration::from_millis((at("run_finished") - at("run_started")).max(0) as u64)
}

/// Through the daemon: from `POST /v1/runs` until its event stream ends with the run.
pub fn daemon_run(d: &daemon::Daemon, name: &str) -> Duration {
    let t0 = Instant::now();
    let id = d.trigger(&[name]);
    let events = d.events(&id, 0);
    let took = t0.elapsed();
    let last = events.last().expect("events");
    assert_eq!(last["state"], "succeeded", "{last}");
    took
}

/// Peak resident memory of this process so far, in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}
