//! `gantry plugins` and `gantry plugin check`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Serialize;

use crate::config::DaemonConfig;
use crate::wasm::bindings::types::Capability;
use crate::wasm::cache::ComponentCache;
use crate::wasm::{Plugin, PluginHost, PluginSource, Registry};

/// What listings show of a plugin.
#[derive(Serialize)]
struct PluginView {
    name: String,
    world: String,
    kinds: Vec<String>,
    version: String,
    description: String,
    source: PluginSource,
    digest: String,
    requested: Vec<String>,
    granted: Vec<String>,
    refused: Vec<String>,
}

impl PluginView {
    fn of(p: &Plugin) -> Self {
        let requested = p
            .info
            .capabilities
            .iter()
            .map(|c| match c {
                Capability::Exec(program) => format!("exec:{program}"),
                Capability::Kube => "kube".to_string(),
            })
            .collect();
        let mut granted: Vec<String> = p
            .caps
            .programs
            .iter()
            .filter(|(name, _)| !name.starts_with('/'))
            .map(|(name, path)| format!("exec:{name}={}", path.display()))
            .collect();
        granted.extend(
            p.caps
                .kube_namespaces
                .iter()
                .filter(|_| p.caps.requested_kube)
                .map(|ns| format!("kube:{ns}")),
        );
        PluginView {
            name: p.info.name.clone(),
            world: p.world.to_string(),
            kinds: p.info.kinds.clone(),
            version: p.info.version.clone(),
            description: p.info.description.clone(),
            source: p.source.clone(),
            digest: p.digest.clone(),
            requested,
            granted,
            refused: p.caps.refusals.clone(),
        }
    }
}

/// The host and registry as the daemon would build them from this configuration.
pub async fn load_registry(
    config_dir: &Path,
    state_dir: &Path,
) -> anyhow::Result<(DaemonConfig, PluginHost, Registry)> {
    let config = DaemonConfig::load(config_dir)?;
    let cache = if state_dir.is_dir() || std::fs::create_dir_all(state_dir).is_ok() {
        ComponentCache::in_state_dir(state_dir)
    } else {
        ComponentCache::disabled()
    };
    let host = PluginHost::with_pool(
        config.limits.clone(),
        config.wasm.pooling,
        config.wasm.instances,
        cache,
    )
    .context("starting the Wasm engine")?;
    let registry = Registry::discover(
        &host,
        crate::builtin::BUILTIN_PLUGINS,
        &config.plugin_dirs(config_dir),
        &config.plugins,
    )
    .await;
    Ok((config, host, registry))
}

pub async fn list(config_dir: &Path, state_dir: &Path, json: bool) -> anyhow::Result<i32> {
    let (_, _, registry) = load_registry(config_dir, state_dir).await?;
    let views: Vec<PluginView> = registry
        .plugins()
        .iter()
        .map(|p| PluginView::of(p))
        .collect();
    if json {
        let out = serde_json::json!({ "plugins": views, "problems": registry.problems });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    println!(
        "{:<12} {:<5} {:<24} {:<8} {:<28} {:<16} GRANTED",
        "NAME", "WORLD", "KINDS", "VERSION", "SOURCE", "REQUESTED"
    );
    for v in &views {
        println!(
            "{:<12} {:<5} {:<24} {:<8} {:<28} {:<16} {}",
            v.name,
            v.world,
            v.kinds.join(","),
            v.version,
            v.source.to_string(),
            or_dash(&v.requested),
            or_dash(&v.granted)
        );
    }
    for v in views.iter().filter(|v| !v.refused.is_empty()) {
        for r in &v.refused {
            println!("note: {}: {r}", v.name);
        }
    }
    for p in &registry.problems {
        println!("error: {}: {}", p.source, p.message);
    }
    Ok(if registry.problems.is_empty() { 0 } else { 1 })
}

fn or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

pub async fn check(
    config_dir: &Path,
    state_dir: &Path,
    file: &Path,
    json: bool,
) -> anyhow::Result<i32> {
    let (config, host, registry) = load_registry(config_dir, state_dir).await?;
    let source = PluginSource::File(file.to_path_buf());
    let loaded = match PluginHost::read_file(file) {
        Ok(wasm) => host.load(source, &wasm, &config.plugins).await,
        Err(e) => Err(e),
    };
    let plugin = match loaded {
        Ok(p) => Arc::new(p),
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "loadable": false, "error": e.to_string() })
                );
            } else {
                println!("refused: {e}");
            }
            return Ok(1);
        }
    };
    // A file that already sits in a plugin directory is in the registry as itself.
    let already_loaded = registry
        .plugins()
        .iter()
        .any(|p| p.source == plugin.source && p.digest == plugin.digest);
    let clash = if already_loaded {
        None
    } else {
        registry.clash(&plugin)
    };
    let view = PluginView::of(&plugin);
    if json {
        let out =
            serde_json::json!({ "loadable": clash.is_none(), "plugin": view, "clash": clash });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "plugin:    {} {} ({} plugin)",
            view.name, view.version, view.world
        );
        println!("kinds:     {}", view.kinds.join(", "));
        println!("digest:    sha256:{}", view.digest);
        println!("requests:  {}", or_dash(&view.requested));
        println!("granted:   {}", or_dash(&view.granted));
        for r in &view.refused {
            println!("refused:   {r}");
        }
        if let Some(c) = &clash {
            println!("refused:   {c}");
        }
        if clash.is_none() && view.refused.is_empty() {
            println!("ok: loads, and everything it requests is granted");
        }
    }
    Ok(if clash.is_some() { 1 } else { 0 })
}
