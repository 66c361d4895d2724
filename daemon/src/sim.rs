//! The Kubernetes API simulator inside gantry: `gantry sim` serves one on its own, and
//! `--sim` embeds one so a daemon or a local run deploys to it instead of any real cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::host::kube::{ClusterConfig, Clusters};

/// A simulator serving on loopback and the kubeconfig that reaches it.
pub struct Embedded {
    pub sim: kubesim::RunningSim,
    pub kubeconfig: PathBuf,
}

/// Starts a simulator on a free loopback port and writes its kubeconfig under `dir` (the
/// state directory, where only the daemon's user can read it).
pub async fn embedded(dir: &Path) -> anyhow::Result<Embedded> {
    let sim = kubesim::start(kubesim::SimOptions::default()).await?;
    let kubeconfig = dir.join("kubesim").join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    tracing::info!(url = %sim.url(), kubeconfig = %kubeconfig.display(), "embedded Kubernetes simulator serving");
    Ok(Embedded { sim, kubeconfig })
}

/// The clusters a local command uses: the configured ones, or with `sim` a freshly started
/// simulator standing in for all of them, its kubeconfig under `work_dir` (kept alive by the
/// caller).
pub async fn clusters(
    sim: bool,
    work_dir: &Path,
    configured: &BTreeMap<String, ClusterConfig>,
    config_dir: &Path,
) -> anyhow::Result<(Option<Embedded>, Arc<Clusters>)> {
    if !sim {
        return Ok((
            None,
            Arc::new(Clusters::new(configured.clone(), config_dir)),
        ));
    }
    let embedded = embedded(work_dir).await?;
    let clusters = Arc::new(Clusters::simulated(embedded.kubeconfig.clone()));
    Ok((Some(embedded), clusters))
}

/// `gantry sim`: serves until interrupted.
pub async fn serve(
    listen: SocketAddr,
    kubeconfig: &Path,
    ready_delay: Duration,
) -> anyhow::Result<i32> {
    let sim = kubesim::start(kubesim::SimOptions {
        listen,
        controllers: kubesim::ControllerOptions {
            ready_delay,
            ..Default::default()
        },
    })
    .await?;
    sim.write_kubeconfig(kubeconfig)?;
    println!("kubesim serving {}", sim.url());
    println!("kubeconfig written to {}", kubeconfig.display());
    println!(
        "faults: POST {}/kubesim/faults, e.g. {{\"method\":\"PATCH\",\"status\":503,\"times\":2}}",
        sim.url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(0)
}
