//! The clusters named in gantry.toml (`[clusters.NAME]`), each a kubeconfig and context, and
//! their clients, built on first use and shared by every task call until the next reload.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::Mutex;

pub use crate::config::daemon::ClusterConfig;

/// Why no client could be had.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClusterError {
    #[error(
        "no cluster is configured: add [clusters.NAME] with kubeconfig = \"...\" to gantry.toml"
    )]
    NoneConfigured,
    #[error(
        "several clusters are configured ({0}) and none is marked default = true; name one in the task's `cluster` parameter"
    )]
    NoDefault(String),
    #[error("no cluster `{name}` in gantry.toml (configured: {known})")]
    Unknown { name: String, known: String },
    #[error("cluster `{name}`: {reason}")]
    Client { name: String, reason: String },
}

pub struct Clusters {
    configs: BTreeMap<String, ClusterConfig>,
    config_dir: PathBuf,
    /// With a simulator embedded (`--sim`), every cluster name leads to it, so an offline run
    /// can never reach a real cluster by naming one.
    simulator: Option<PathBuf>,
    clients: Mutex<HashMap<String, kube::Client>>,
}

/// The name sessions report when they reach the embedded simulator.
pub const SIMULATOR: &str = "sim";

impl Clusters {
    pub fn new(configs: BTreeMap<String, ClusterConfig>, config_dir: &Path) -> Self {
        Clusters {
            configs,
            config_dir: config_dir.to_path_buf(),
            simulator: None,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Every cluster, named or not, is the simulator whose kubeconfig is at `kubeconfig`.
    pub fn simulated(kubeconfig: PathBuf) -> Self {
        let mut c = Self::none();
        c.simulator = Some(kubeconfig);
        c
    }

    /// No cluster at all: every `open` explains how to add one.
    pub fn none() -> Self {
        Self::new(BTreeMap::new(), Path::new("."))
    }

    pub fn names(&self) -> Vec<String> {
        self.configs.keys().cloned().collect()
    }

    /// Which configured cluster a task means.
    pub fn resolve(&self, name: Option<&str>) -> Result<String, ClusterError> {
        let known = || self.names().join(", ");
        if self.simulator.is_some() {
            return Ok(SIMULATOR.to_string());
        }
        match name {
            Some(n) if self.configs.contains_key(n) => Ok(n.to_string()),
            Some(n) => Err(ClusterError::Unknown {
                name: n.to_string(),
                known: if self.configs.is_empty() {
                    "none".into()
                } else {
                    known()
                },
            }),
            None => {
                if self.configs.is_empty() {
                    return Err(ClusterError::NoneConfigured);
                }
                if let Some((n, _)) = self.configs.iter().find(|(_, c)| c.default) {
                    return Ok(n.clone());
                }
                if self.configs.len() == 1 {
                    return Ok(self.names().remove(0));
                }
                Err(ClusterError::NoDefault(known()))
            }
        }
    }

    /// The client for a cluster, built from its kubeconfig on first use.
    pub async fn client(&self, name: Option<&str>) -> Result<(String, kube::Client), ClusterError> {
        let name = self.resolve(name)?;
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&name) {
            return Ok((name, c.clone()));
        }
        let cfg = match &self.simulator {
            Some(path) => ClusterConfig {
                kubeconfig: Some(path.clone()),
                ..Default::default()
            },
            None => self
                .configs
                .get(&name)
                .cloned()
                .ok_or_else(|| ClusterError::Unknown {
                    name: name.clone(),
                    known: self.names().join(", "),
                })?,
        };
        let fail = |reason: String| ClusterError::Client {
            name: name.clone(),
            reason,
        };
        let kubeconfig = match &cfg.kubeconfig {
            Some(p) => {
                let path = self.config_dir.join(p);
                kube::config::Kubeconfig::read_from(&path)
                    .map_err(|e| fail(format!("reading {}: {e}", path.display())))?
            }
            None => kube::config::Kubeconfig::read()
                .map_err(|e| fail(format!("reading the default kubeconfig: {e}")))?,
        };
        let options = kube::config::KubeConfigOptions {
            context: cfg.context.clone(),
            ..Default::default()
        };
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| fail(e.to_string()))?;
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(60));
        let client = kube::Client::try_from(config).map_err(|e| fail(e.to_string()))?;
        clients.insert(name.clone(), client.clone());
        Ok((name, client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(default: bool) -> ClusterConfig {
        ClusterConfig {
            default,
            ..Default::default()
        }
    }

    #[test]
    fn default_cluster_rules() {
        let none = Clusters::none();
        assert_eq!(none.resolve(None), Err(ClusterError::NoneConfigured));
        let one = Clusters::new([("a".to_string(), cluster(false))].into(), Path::new("."));
        assert_eq!(one.resolve(None).unwrap(), "a");
        let two = Clusters::new(
            [
                ("a".to_string(), cluster(false)),
                ("b".to_string(), cluster(false)),
            ]
            .into(),
            Path::new("."),
        );
        assert!(matches!(two.resolve(None), Err(ClusterError::NoDefault(_))));
        assert!(matches!(
            two.resolve(Some("c")),
            Err(ClusterError::Unknown { .. })
        ));
        let marked = Clusters::new(
            [
                ("a".to_string(), cluster(false)),
                ("b".to_string(), cluster(true)),
            ]
            .into(),
            Path::new("."),
        );
        assert_eq!(marked.resolve(None).unwrap(), "b");
    }
}
