//! Cost of one sandboxed plugin call (fresh store, instantiate, `describe`) with the pooling
//! allocator on and off, against spawning a process (`/bin/true`) for the same work, all
//! measured in one run. Prints medians and ratios.
//!
//!     cargo bench -p gantry --bench plugin_call

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gantry::wasm::cache::ComponentCache;
use gantry::wasm::limits::Limits;
use gantry::wasm::{PluginHost, PluginSource};

const WARMUP: usize = 50;
const CALLS: usize = 2000;
const SPAWNS: usize = 300;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn describe_median(pooling: bool, wasm: &[u8]) -> (Duration, bool) {
    let host =
        PluginHost::new(Limits::default(), pooling, ComponentCache::disabled()).expect("engine");
    let plugin = host
        .load(PluginSource::Builtin("exec".into()), wasm, &BTreeMap::new())
        .await
        .expect("load exec plugin");
    for _ in 0..WARMUP {
        plugin.describe().await.expect("describe");
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        let info = plugin.describe().await.expect("describe");
        samples.push(t.elapsed());
        std::hint::black_box(info);
    }
    (median(samples), host.engine().pooling())
}

fn spawn_median() -> Duration {
    let mut samples = Vec::with_capacity(SPAWNS);
    for _ in 0..SPAWNS {
        let t = Instant::now();
        let status = std::process::Command::new("/bin/true")
            .status()
            .expect("spawn /bin/true");
        samples.push(t.elapsed());
        assert!(status.success());
    }
    median(samples)
}

fn main() {
    let Some((_, wasm)) = gantry::builtin::BUILTIN_PLUGINS
        .iter()
        .find(|(n, _)| *n == "exec")
    else {
        eprintln!("the exec plugin is not built in; run scripts/build-plugins.sh and rebuild");
        std::process::exit(1);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (pooled, pooling_active) = rt.block_on(describe_median(true, wasm));
    let (on_demand, _) = rt.block_on(describe_median(false, wasm));
    let spawn = spawn_median();
    println!(
        "plugin call = fresh Store + instantiate + describe(), {CALLS} calls each; process = spawn+wait /bin/true, {SPAWNS} runs"
    );
    println!(
        "median plugin call, pooling {}: {:>9.1} µs",
        if pooling_active {
            "on "
        } else {
            "off (fell back)"
        },
        micros(pooled)
    );
    println!(
        "median plugin call, pooling off: {:>9.1} µs",
        micros(on_demand)
    );
    println!("median process spawn /bin/true:  {:>9.1} µs", micros(spawn));
    println!(
        "spawn / pooled call:    {:>6.1}x   (target >= 10x, pooled target < 100 µs)",
        spawn.as_secs_f64() / pooled.as_secs_f64()
    );
    println!(
        "spawn / on-demand call: {:>6.1}x",
        spawn.as_secs_f64() / on_demand.as_secs_f64()
    );
    println!(
        "on-demand / pooled:     {:>6.2}x",
        on_demand.as_secs_f64() / pooled.as_secs_f64()
    );
}
