//! gantry beside make, ninja and xargs on the same real work, runs interleaved, medians:
//! 1. a random DAG of 200 `sleep 0.05` tasks under a cap of 7: serial, `make -j7`,
//!    `ninja -j7`, `gantry run` and the daemon, each against the lower bound
//!    max(critical path, work / cap) and against the ideal greedy list schedule;
//! 2. overhead per task: 1,000 × `true` under a cap of 7, against `xargs -P7` and `make -j7`.
//!
//! Every contender's programs get the environment gantry gives its programs (`program_env`).
//!
//! Needs make and ninja (scripts/setup-bench-tools.sh) and the built plugins.
//!
//!     cargo bench -p gantry --bench compare [-- dag|overhead]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const CAP: usize = 7;
const REPS: usize = 5;

fn main() {
    require(&["make", "ninja", "xargs", "sleep", "true"]);
    // `cargo bench --bench compare -- overhead` runs that part alone.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    // Each part's files are removed only at the end: on ext4 without a journal, creating
    // files just after thousands were deleted scans past every recently deleted inode, and
    // the next part would measure that.
    let mut sites = Vec::new();
    if wanted("dag") {
        sites.push(dag());
    }
    if wanted("overhead") {
        sites.push(overhead());
    }
    drop(sites);
}

fn dag() -> daemon::Site {
    let dag = Dag::random(200, 7, Duration::from_millis(50));
    let site = site(&["sleep"], "dag", &dag.workflow(CAP, &["sleep", "0.05"]));
    let dir = site.tmp.path().join("tools");
    std::fs::create_dir_all(&dir).expect("tools dir");
    std::fs::write(dir.join("Makefile"), dag.makefile("sleep 0.05")).expect("Makefile");
    std::fs::write(dir.join("build.ninja"), dag.ninja("sleep 0.05")).expect("build.ninja");
    // Warm the compiled-component cache and the history (past durations) once.
    gantry_run(&site, "dag");
    let d = site.start();
    daemon_run(&d, "dag");

    let (mut make_t, mut ninja_t, mut run_t, mut run_wall, mut daemon_t) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPS {
        make_t.push(make(&dir, CAP));
        ninja_t.push(ninja(&dir, CAP));
        let (wall, span) = gantry_run(&site, "dag");
        run_wall.push(wall);
        run_t.push(span);
        daemon_t.push(daemon_run(&d, "dag"));
    }
    let serial_script: String = (0..dag.len()).map(|_| "sleep 0.05\n").collect();
    let serial = timed(program_env(&mut Command::new("sh")).args(["-c", &serial_script]));

    let bound = dag.lower_bound(CAP);
    let greedy = dag.greedy(CAP);
    println!(
        "200 x sleep 0.05 s, random DAG, cap {CAP} ({REPS} interleaved runs, medians): lower bound {:.0} ms, ideal greedy schedule {:.0} ms",
        ms(bound),
        ms(greedy)
    );
    let row = |name: &str, t: Duration| {
        println!(
            "  {name:<34} {:>8.0} ms   {:.3}x bound   {:.3}x greedy",
            ms(t),
            t.as_secs_f64() / bound.as_secs_f64(),
            t.as_secs_f64() / greedy.as_secs_f64()
        );
    };
    row("serial (sh, one after another)", serial);
    let make_m = median(make_t);
    let ninja_m = median(ninja_t);
    let run_m = median(run_t);
    let daemon_m = median(daemon_t);
    row("make -j7", make_m);
    row("ninja -j7", ninja_m);
    row("gantry run (run_started..finished)", run_m);
    row("gantry run (whole process)", median(run_wall));
    row("gantry daemon (POST..run_finished)", daemon_m);
    let best_tool = make_m.min(ninja_m);
    for (name, t) in [("gantry run", run_m), ("daemon", daemon_m)] {
        println!(
            "  {name}: {:.3}x bound (target <= 1.05x: {}), {} than make and ninja",
            t.as_secs_f64() / bound.as_secs_f64(),
            verdict(t.as_secs_f64() <= 1.05 * bound.as_secs_f64()),
            if t < best_tool {
                "faster"
            } else {
                "NOT faster"
            }
        );
    }
    drop(d);
    site
}

fn overhead() -> daemon::Site {
    const N: usize = 1000;
    let flat = Dag::independent(N, Duration::ZERO);
    let site = site(&["true"], "flat", &flat.workflow(CAP, &["true"]));
    let dir = site.tmp.path().join("tools");
    std::fs::create_dir_all(&dir).expect("tools dir");
    std::fs::write(dir.join("Makefile"), flat.makefile("true")).expect("Makefile");
    gantry_run(&site, "flat");
    let d = site.start();
    daemon_run(&d, "flat");

    let xargs = || {
        let input: String = (0..N).map(|i| format!("{i}\n")).collect();
        let t0 = std::time::Instant::now();
        let mut child = program_env(&mut Command::new("xargs"))
            .args([&format!("-P{CAP}"), "-n1", "true"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("xargs");
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(input.as_bytes()).expect("xargs input");
        }
        assert!(child.wait().expect("xargs").success());
        t0.elapsed()
    };
    let (mut x, mut m, mut r, mut dm) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPS {
        x.push(xargs());
        m.push(make(&dir, CAP));
        r.push(gantry_run(&site, "flat").1);
        dm.push(daemon_run(&d, "flat"));
    }
    let per = |t: Duration| t.as_secs_f64() * 1e6 / N as f64;
    let (x, m, r, dm) = (median(x), median(m), median(r), median(dm));
    println!("1,000 x true, cap {CAP} ({REPS} interleaved runs, medians), wall time per task:");
    println!("  xargs -P7                          {:>8.0} µs", per(x));
    println!("  make -j7                           {:>8.0} µs", per(m));
    println!(
        "  gantry run (run_started..finished) {:>8.0} µs   {:.2}x xargs (target <= 1: {})",
        per(r),
        per(r) / per(x),
        verdict(r <= x)
    );
    println!(
        "  gantry daemon (POST..run_finished) {:>8.0} µs   {:.2}x xargs (target <= 1: {})",
        per(dm),
        per(dm) / per(x),
        verdict(dm <= x)
    );
    drop(d);
    site
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}
