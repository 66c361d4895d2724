//! Wide parallelism with real tasks: 500 × `sleep 1` in one workflow with parallelism 256,
//! so two waves: the bound is 2 s. Through the daemon and `gantry run`, beside `xargs -P256`
//! starting the same processes, medians of 5.
//!
//!     cargo bench -p gantry --bench wide

mod support;

use std::time::Duration;

use support::*;

/// Interleaved rounds of the three contenders.
const ROUNDS: usize = 5;

fn main() {
    let dag = Dag::independent(500, Duration::from_secs(1));
    let site = site(&["sleep"], "wide", &dag.workflow(256, &["sleep", "1"]));
    gantry_run(&site, "wide");
    let d = site.start();
    // The same processes started by xargs, with no shell between, as a reference for what
    // starting 256 processes at once costs on this machine: a launcher doing nothing else.
    let xargs = || {
        let input: String = (0..dag.len()).map(|i| format!("{i}\n")).collect();
        let t0 = std::time::Instant::now();
        let mut child = program_env(&mut std::process::Command::new("xargs"))
            .args(["-P256", "-I{}", "sleep", "1"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("xargs");
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(input.as_bytes()).expect("xargs input");
        }
        assert!(child.wait().expect("xargs").success());
        t0.elapsed()
    };
    let (mut daemon_t, mut run_t, mut xargs_t) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        daemon_t.push(daemon_run(&d, "wide"));
        run_t.push(gantry_run(&site, "wide").1);
        xargs_t.push(xargs());
    }
    let bound = dag.lower_bound(256);
    println!(
        "500 x sleep 1 s, parallelism 256 (medians of {ROUNDS}, interleaved): bound {:.0} ms",
        ms(bound)
    );
    let xargs_t = median(xargs_t);
    for (name, t) in [
        ("gantry daemon (POST..run_finished)", median(daemon_t)),
        ("gantry run (run_started..finished)", median(run_t)),
        ("xargs -P256 (reference)", xargs_t),
    ] {
        let ratio = t.as_secs_f64() / bound.as_secs_f64();
        println!(
            "  {name:<36} {:>7.0} ms   {ratio:.3}x bound (target <= 1.05x: {})   {:.3}x xargs",
            ms(t),
            if ratio <= 1.05 { "met" } else { "MISSED" },
            t.as_secs_f64() / xargs_t.as_secs_f64()
        );
    }
}
