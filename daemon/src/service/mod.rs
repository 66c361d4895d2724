//! `gantry daemon`: the long-running service. It owns the Wasm host, the active (last good)
//! configuration, the run history and the runs in flight; the API and the watcher act on it.

pub mod history;
pub mod lock;
pub mod metrics;
pub mod runs;
pub mod serve;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::api::auth::Access;
use crate::config::DaemonConfig;
use crate::host::kube::Clusters;
use crate::load::{Loaded, Loader, ValidConfig};
use crate::store::Store;
use crate::wasm::{PluginHost, Registry};

/// Why a run could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Draining for shutdown: no run may start, whoever asks (API, watcher).
    #[error("gantry is shutting down and accepts no new runs")]
    ShuttingDown,
    #[error("name at least one workflow")]
    NoWorkflows,
    #[error("no workflow `{name}` (workflows: {known})")]
    UnknownWorkflow { name: String, known: String },
    /// The configuration has not loaded since the daemon started: nothing can run until it
    /// is fixed (and reloaded, which a change to the files does by itself).
    #[error(
        "no configuration is active: the one in {dir} did not load when the daemon started; fix it (`gantry validate` lists what is wrong): {errors}"
    )]
    NoConfiguration { dir: String, errors: String },
    #[error("{0}")]
    Plan(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The configuration in force: validated as a whole and swapped in atomically.
pub struct Active {
    pub generation: u64,
    pub config: ValidConfig,
    pub registry: Arc<Registry>,
    pub clusters: Arc<Clusters>,
}

pub use crate::protocol::ReloadStatus;

pub struct Daemon {
    pub(crate) config_dir: PathBuf,
    pub(crate) state_dir: PathBuf,
    loader: Loader,
    active: RwLock<Arc<Active>>,
    last_reload: Mutex<ReloadStatus>,
    reload_lock: tokio::sync::Mutex<()>,
    pub(crate) store: Arc<Store>,
    pub(crate) runs: Arc<runs::RunManager>,
    accepting: AtomicBool,
    pub(crate) access: RwLock<Access>,
    pub(crate) reloads_ok: AtomicU64,
    pub(crate) reloads_failed: AtomicU64,
    pub(crate) started_at: std::time::Instant,
    /// The embedded simulator's kubeconfig under `--sim`; every cluster then leads there.
    simulator: Option<PathBuf>,
}

impl Daemon {
    /// Opens the store (marking runs an earlier process left running as interrupted) and
    /// loads the configuration. An invalid configuration at start leaves no workflows
    /// active and is reported by `/v1/status`, so the operator can fix it without a restart.
    pub async fn start(
        config_dir: &Path,
        state_dir: &Path,
        simulator: Option<PathBuf>,
    ) -> anyhow::Result<Arc<Daemon>> {
        let store = Arc::new(Store::open(state_dir)?);
        let daemon_config = DaemonConfig::load(config_dir).unwrap_or_default();
        let loader = Loader::open(config_dir, state_dir)?;
        let empty = Active {
            generation: 0,
            config: ValidConfig {
                daemon: daemon_config.clone(),
                workflows: Default::default(),
            },
            registry: Arc::new(Registry::default()),
            clusters: Arc::new(Clusters::none()),
        };
        let daemon = Arc::new(Daemon {
            config_dir: config_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            loader,
            active: RwLock::new(Arc::new(empty)),
            last_reload: Mutex::new(ReloadStatus {
                ok: false,
                at: 0,
                generation: 0,
                errors: vec!["not loaded yet".into()],
                restart_needed: Vec::new(),
            }),
            reload_lock: tokio::sync::Mutex::new(()),
            runs: Arc::new(runs::RunManager::new(store.clone(), state_dir)?),
            store,
            accepting: AtomicBool::new(true),
            access: RwLock::new(daemon_config.api.clone()),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            started_at: std::time::Instant::now(),
            simulator,
        });
        daemon.reload().await;
        daemon.prune_history();
        Ok(daemon)
    }

    /// Prunes the history `[history]` no longer keeps, off the async threads.
    fn prune_history(&self) {
        let (store, dir) = (self.store.clone(), self.state_dir.clone());
        let settings = self.active().config.daemon.history.clone();
        tokio::task::spawn_blocking(move || history::prune(&store, &dir, &settings));
    }

    pub fn active(&self) -> Arc<Active> {
        self.active
            .read()
            .map(|a| a.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn last_reload(&self) -> ReloadStatus {
        self.last_reload
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Reads, validates and, if valid, swaps in the configuration on disk. Runs in flight keep
    /// the configuration they started with.
    pub async fn reload(&self) -> ReloadStatus {
        let _one_at_a_time = self.reload_lock.lock().await;
        let result = self.load().await;
        let generation = self.active().generation;
        let status = match result {
            Ok(Loaded { config, registry }) => {
                let next = generation + 1;
                let restart_needed = self.loader.restart_needed(&config.daemon);
                for pending in &restart_needed {
                    tracing::warn!("{pending}");
                }
                if let Ok(mut access) = self.access.write() {
                    *access = config.daemon.api.clone();
                }
                let clusters = Arc::new(match &self.simulator {
                    Some(kubeconfig) => Clusters::simulated(kubeconfig.clone()),
                    None => Clusters::new(config.daemon.clusters.clone(), &self.config_dir),
                });
                let active = Arc::new(Active {
                    generation: next,
                    config,
                    registry,
                    clusters,
                });
                match self.active.write() {
                    Ok(mut slot) => *slot = active,
                    Err(p) => *p.into_inner() = active,
                }
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(generation = next, "configuration loaded");
                ReloadStatus {
                    ok: true,
                    at: crate::store::now_millis(),
                    generation: next,
                    errors: Vec::new(),
                    restart_needed,
                }
            }
            Err(errors) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                for e in &errors {
                    tracing::error!("invalid configuration: {e}");
                }
                tracing::warn!(
                    generation,
                    "configuration rejected; the last good one stays active"
                );
                ReloadStatus {
                    ok: false,
                    at: crate::store::now_millis(),
                    generation,
                    errors,
                    restart_needed: Vec::new(),
                }
            }
        };
        if let Ok(mut last) = self.last_reload.lock() {
            *last = status.clone();
        }
        status
    }

    /// A reload after start-up, with RELOADING and READY told to the service manager.
    pub async fn reload_announced(&self) -> ReloadStatus {
        crate::systemd::reloading();
        let status = self.reload().await;
        crate::systemd::ready(if status.ok {
            "reloaded: ok"
        } else {
            "reloaded: rejected, the previous configuration stays active"
        });
        status
    }

    /// Validates what is on disk without activating it.
    pub async fn load(&self) -> Result<Loaded, Vec<String>> {
        self.loader.load().await
    }

    /// For each of `names` whose file the last reload rejected: the run deploys the last good
    /// version of it, not what the file says now.
    pub fn stale(&self, names: &[String]) -> Vec<String> {
        let last = self.last_reload();
        if last.ok {
            return Vec::new();
        }
        let active = self.active();
        names
            .iter()
            .filter_map(|name| active.config.workflows.get(name))
            .filter_map(|wf| {
                let file = format!("{}:", wf.file.display());
                let first = last.errors.iter().find(|e| e.starts_with(&file))?;
                Some(format!(
                    "the latest edit of workflow `{}` was rejected, so its last good version (configuration generation {}) is deployed; the edit's first error: {first}",
                    wf.name, active.generation
                ))
            })
            .collect()
    }

    /// Starts a run of `names` with the active configuration and returns its id. The API and
    /// the config watcher (auto-deploy) both start runs here.
    pub fn start_run(
        self: &Arc<Self>,
        names: &[String],
        trigger: &str,
    ) -> Result<String, StartError> {
        if !self.accepting() {
            return Err(StartError::ShuttingDown);
        }
        if names.is_empty() {
            return Err(StartError::NoWorkflows);
        }
        let active = self.active();
        if active.generation == 0 {
            return Err(StartError::NoConfiguration {
                dir: self.config_dir.display().to_string(),
                errors: self.last_reload().errors.join("; "),
            });
        }
        let mut selected = Vec::new();
        for name in names {
            match active.config.workflows.get(name) {
                Some(wf) => selected.push(wf.clone()),
                None => {
                    let known: Vec<&str> =
                        active.config.workflows.keys().map(String::as_str).collect();
                    return Err(StartError::UnknownWorkflow {
                        name: name.clone(),
                        known: known.join(", "),
                    });
                }
            }
        }
        let plan = crate::engine::plan::compile(selected).map_err(|errs| {
            StartError::Plan(
                errs.into_iter()
                    .map(|e| e.message)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let id = crate::store::new_run_id();
        self.store.create_run(&id, names, trigger)?;
        let opts = crate::engine::run::RunOptions::for_config(
            id.clone(),
            &self.config_dir,
            &active.config.daemon.daemon,
        );
        // Each run started is a moment to forget what `[history]` no longer keeps.
        self.prune_history();
        self.runs.start(
            id.clone(),
            plan,
            active.registry.clone(),
            active.clusters.clone(),
            opts,
            trigger,
        );
        Ok(id)
    }

    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// Stops accepting runs, lets running ones finish for up to `grace`, then cancels them
    /// and waits until their cancellation is recorded.
    pub async fn drain(&self, grace: std::time::Duration) {
        self.accepting.store(false, Ordering::SeqCst);
        if tokio::time::timeout(grace, self.runs.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!("grace period over; cancelling the runs still running");
            self.runs.cancel_all();
            self.runs.wait_idle().await;
        }
        self.runs.close_scratch();
    }

    pub fn host(&self) -> &PluginHost {
        self.loader.host()
    }
}
