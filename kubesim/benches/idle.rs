//! What the simulator costs: the CPU it uses while nothing happens, with 0, 1,000 and
//! 10,000 objects stored, and how many server-side applies per second it takes at each size.
//!
//! `cargo bench -p kubesim --bench idle`; `KUBESIM_BENCH_SIZES=0,1000` picks other sizes.
//! CPU time is the process's own (getrusage), so it covers the server, the controllers and
//! every thread tokio started; the figures are medians of several windows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

/// `struct rusage` as Linux lays it out on 64-bit targets.
#[repr(C)]
#[derive(Default)]
struct RUsage {
    utime: [i64; 2],
    stime: [i64; 2],
    rest: [i64; 14],
}

unsafe extern "C" {
    fn getrusage(who: i32, usage: *mut RUsage) -> i32;
}

/// User plus system CPU time of the whole process so far.
fn cpu_time() -> Duration {
    let mut u = RUsage::default();
    // SAFETY: `u` is a writable struct with the layout getrusage(2) fills in on Linux.
    let rc = unsafe { getrusage(0, &mut u) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let micros = |tv: [i64; 2]| tv[0] as u64 * 1_000_000 + tv[1] as u64;
    Duration::from_micros(micros(u.utime) + micros(u.stime))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Fills the store with `n` objects: one in ten a Deployment of one replica (which brings a
/// ReplicaSet, a Pod and Events along), one a Service, one a Secret, the rest ConfigMaps,
/// spread over ten namespaces.
fn populate(store: &kubesim::Store, n: usize) -> anyhow::Result<()> {
    let reg = store.registry();
    let t = |g: &str, k: &str| {
        reg.by_kind(g, "v1", k)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{k} is not served"))
    };
    let (ns_t, cm, secret, svc, deploy) = (
        t("", "Namespace")?,
        t("", "ConfigMap")?,
        t("", "Secret")?,
        t("", "Service")?,
        t("apps", "Deployment")?,
    );
    let opts = kubesim::store::WriteOptions {
        manager: "bench".into(),
        ..Default::default()
    };
    for i in 0..10 {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("bench-{i}")}});
        let _ = store.create(&ns_t, "", ns, &opts);
    }
    for i in 0..n {
        let ns = format!("bench-{}", i % 10);
        let name = format!("o-{i}");
        let (t, obj): (&kubesim::resources::ResourceType, Value) = match i % 10 {
            0 => (
                &deploy,
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                            "template": {"metadata": {"labels": {"app": name}},
                                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
            ),
            1 => (
                &svc,
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                   "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}),
            ),
            2 => (
                &secret,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                   "stringData": {"password": "x"}}),
            ),
            _ => (
                &cm,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                   "data": {"key": "value", "index": i.to_string()}}),
            ),
        };
        store
            .create(t, &ns, obj, &opts)
            .map_err(|e| anyhow::anyhow!("creating {name}: {e}"))?;
    }
    Ok(())
}

/// Waits until every Deployment reports its replica ready.
async fn settle(store: &kubesim::Store) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(300);
    loop {
        let pending = store
            .objects_of("apps", "deployments")
            .iter()
            .filter(|d| d["status"]["readyReplicas"] != d["spec"]["replicas"])
            .count();
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() > until {
            anyhow::bail!("{pending} deployments did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn idle_cpu(window: Duration, windows: usize) -> f64 {
    let mut shares = Vec::new();
    for _ in 0..windows {
        let (cpu0, t0) = (cpu_time(), Instant::now());
        tokio::time::sleep(window).await;
        let (cpu1, t1) = (cpu_time(), Instant::now());
        shares.push((cpu1 - cpu0).as_secs_f64() / (t1 - t0).as_secs_f64() * 100.0);
    }
    median(shares)
}

async fn apply_rate(client: &kube::Client, rounds: usize, per_round: usize) -> anyhow::Result<f64> {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
    );
    let params = PatchParams::apply("bench").force();
    let mut rates = Vec::new();
    for round in 0..rounds {
        let t0 = Instant::now();
        for i in 0..per_round {
            let name = format!("applied-{i}");
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                            "data": {"round": round.to_string()}});
            api.patch(&name, &params, &Patch::Apply(&cm)).await?;
        }
        rates.push(per_round as f64 / t0.elapsed().as_secs_f64());
    }
    Ok(median(rates))
}

async fn client_for(sim: &kubesim::RunningSim) -> anyhow::Result<kube::Client> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&path)?;
    let kc = kube::config::Kubeconfig::read_from(&path)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::var("KUBESIM_BENCH_SIZES")
        .unwrap_or_else(|_| "0,1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        println!(
            "{:>8} {:>9} {:>14} {:>14}",
            "objects", "stored", "idle CPU", "applies/s"
        );
        for n in sizes {
            let sim = kubesim::start(kubesim::SimOptions {
                controllers: kubesim::ControllerOptions {
                    ready_delay: Duration::from_millis(10),
                    ..Default::default()
                },
                ..Default::default()
            })
            .await?;
            let store: Arc<kubesim::Store> = sim.store.clone();
            populate(&store, n)?;
            settle(&store).await?;
            // Let the last writes' consequences (events, statuses) finish.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let stored = store.all_objects().len();
            let cpu = idle_cpu(Duration::from_secs(3), 3).await;
            let client = client_for(&sim).await?;
            let rate = apply_rate(&client, 3, 300).await?;
            println!("{n:>8} {stored:>9} {:>12.2} % {rate:>14.0}", cpu);
        }
        Ok(())
    })
}
