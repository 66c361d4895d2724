//! kubesim: a Kubernetes API server simulator.
//!
//! It serves the Kubernetes REST protocol on loopback (discovery, CRUD, list and watch,
//! server-side apply, the patch types, deletion with finalizers and garbage collection) and
//! stands in for the controllers that move status along, so kubectl, helm and kube-rs
//! clients work against it as against a cluster. Faults can be injected per object through
//! annotations (see [`controllers`]) or globally through `/kubesim/faults`.

pub mod controllers;
mod defaults;
mod discovery;
pub mod error;
pub mod faults;
pub mod fields;
mod patch;
mod proto;
mod proto_kinds;
pub mod resources;
mod rollout;
pub mod schema;
pub mod selector;
mod server;
pub mod store;
pub mod structural;
mod table;
pub mod validation;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;

pub use controllers::ControllerOptions;
pub use faults::FaultRule;
pub use store::Store;

/// How to run a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Where to listen; port 0 picks a free one. Loopback unless told otherwise.
    pub listen: SocketAddr,
    pub controllers: ControllerOptions,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            controllers: ControllerOptions::default(),
        }
    }
}

/// A running simulator; it stops when dropped.
pub struct RunningSim {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    sim: Arc<server::Sim>,
    server: JoinHandle<()>,
    controllers: JoinHandle<()>,
}

impl RunningSim {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a fault rule, as `POST /kubesim/faults` does.
    pub fn inject(&self, rule: FaultRule) -> u64 {
        self.sim.faults.add(rule)
    }

    /// Fault rules not yet used up.
    pub fn pending_faults(&self) -> usize {
        self.sim.faults.list().len()
    }

    pub fn clear_faults(&self) {
        self.sim.faults.clear();
    }

    /// Ends every open watch, as a dropped connection would.
    pub fn drop_watches(&self) {
        self.sim.faults.drop_watches();
    }

    /// Writes a kubeconfig whose current context points at this simulator.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        write_kubeconfig(path, &self.url())
    }

    /// Serves until the task is cancelled.
    pub async fn wait(mut self) {
        let _ = (&mut self.server).await;
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.server.abort();
        self.controllers.abort();
    }
}

/// Starts the API server and the controllers on the current tokio runtime.
pub async fn start(opts: SimOptions) -> anyhow::Result<RunningSim> {
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let store = Arc::new(Store::new());
    let sim = Arc::new(server::Sim {
        store: store.clone(),
        faults: faults::Faults::default(),
        address: addr.to_string(),
    });
    let app = server::router(sim.clone());
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "kubesim server stopped");
        }
    });
    let controllers = tokio::spawn(controllers::run(store.clone(), opts.controllers));
    Ok(RunningSim {
        addr,
        store,
        sim,
        server,
        controllers,
    })
}

/// A kubeconfig with one cluster, context and user, all named `kubesim`.
pub fn write_kubeconfig(path: &Path, server: &str) -> anyhow::Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {server}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim\n    namespace: default\ncurrent-context: kubesim\nusers:\n- name: kubesim\n  user: {{}}\n"
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
