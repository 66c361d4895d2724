//! The Kubernetes API simulator inside gantry: `gantry sim` serves one on its own, and
//! `--sim` embeds one so a daemon or a local run deploys to it instead of any real cluster.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A simulator serving on loopback and the kubeconfig that reaches it.
pub struct Embedded {
    pub sim: kubesim::RunningSim,
    pub kubeconfig: PathBuf,
}

/// Starts a simulator on a free loopback port and writes its kubeconfig under the state
/// directory, where only the daemon's user can read it.
pub async fn embedded(state_dir: &Path) -> anyhow::Result<Embedded> {
    let sim = kubesim::start(kubesim::SimOptions::default()).await?;
    let kubeconfig = state_dir.join("kubesim").join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    tracing::info!(url = %sim.url(), kubeconfig = %kubeconfig.display(), "embedded Kubernetes simulator serving");
    Ok(Embedded { sim, kubeconfig })
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
