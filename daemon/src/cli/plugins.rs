//! `gantry plugins` and `gantry plugin check`.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::load::Loader;
use crate::logging::escape_control;
use crate::wasm::{Plugin, PluginHost, PluginSource};

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
    parameters: Vec<ParamView>,
    /// `gantry.toml` lines under `[plugins.NAME]` that would grant all it requests.
    suggested: Vec<String>,
}

/// One parameter a plugin declares, as `gantry plugin check` shows it.
#[derive(Serialize)]
struct ParamView {
    name: String,
    type_hint: String,
    required: bool,
    default: Option<String>,
    description: String,
}

impl PluginView {
    fn of(p: &Plugin) -> Self {
        PluginView {
            name: p.info.name.clone(),
            world: p.world.to_string(),
            kinds: p.info.kinds.clone(),
            version: p.info.version.clone(),
            description: p.info.description.clone(),
            source: p.source.clone(),
            digest: p.digest.clone(),
            requested: p.caps.requested.clone(),
            granted: p.caps.granted.clone(),
            refused: p.caps.refusals.clone(),
            parameters: p
                .info
                .parameters
                .iter()
                .map(|s| ParamView {
                    name: s.name.clone(),
                    type_hint: s.type_hint.clone(),
                    required: s.required,
                    default: s.default_value.clone(),
                    description: s.description.clone(),
                })
                .collect(),
            suggested: p.caps.suggested.clone(),
        }
    }
}

pub async fn list(
    config_dir: &Path,
    state_dir: &Path,
    out: &super::output::Output,
) -> anyhow::Result<i32> {
    let (_, registry) = Loader::open(config_dir, state_dir)?.plugins().await?;
    let views: Vec<PluginView> = registry
        .plugins()
        .iter()
        .map(|p| PluginView::of(p))
        .collect();
    let all = serde_json::json!({ "plugins": views, "problems": registry.problems });
    if out.structured(&all) {
        return Ok(if registry.problems.is_empty() { 0 } else { 1 });
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let mut row = vec![
                v.name.clone(),
                v.world.to_string(),
                v.kinds.join(","),
                v.version.clone(),
            ];
            if out.wide() {
                row.push(v.source.to_string());
            }
            row.push(or_dash(&v.requested));
            row.push(or_dash(&v.granted));
            row
        })
        .collect();
    let header: &[&str] = if out.wide() {
        &[
            "NAME",
            "WORLD",
            "KINDS",
            "VERSION",
            "SOURCE",
            "REQUESTED",
            "GRANTED",
        ]
    } else {
        &["NAME", "WORLD", "KINDS", "VERSION", "REQUESTED", "GRANTED"]
    };
    print!("{}", super::output::table(header, &rows));
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
    let loader = Loader::open(config_dir, state_dir)?;
    let (config, registry) = loader.plugins().await?;
    let source = PluginSource::File(file.to_path_buf());
    let loaded = match PluginHost::read_file(file) {
        Ok(wasm) => {
            loader
                .host()
                .load_with(source, &wasm, &config.plugins, &config.limits)
                .await
        }
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
        if !view.description.is_empty() {
            println!("about:     {}", escape_control(&view.description));
        }
        println!("digest:    sha256:{}", view.digest);
        print_parameters(&view.parameters);
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
        if !view.suggested.is_empty() {
            println!();
            println!("gantry.toml lines that grant what it requests:");
            println!();
            println!("    [plugins.{}]", escape_control(&view.name));
            for line in &view.suggested {
                println!("    {}", escape_control(line));
            }
        }
    }
    Ok(if clash.is_some() { 1 } else { 0 })
}

/// The parameters a plugin declares, one per line, so an operator can write a task's table
/// from `gantry plugin check` alone.
fn print_parameters(params: &[ParamView]) {
    if params.is_empty() {
        println!("params:    -");
        return;
    }
    println!("params:");
    let width = params.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in params {
        let mut facts = vec![p.type_hint.clone()];
        if p.required {
            facts.push("required".into());
        }
        if let Some(d) = &p.default {
            facts.push(format!("default {d}"));
        }
        // What a plugin says about itself reaches the terminal as text, never as escapes.
        println!(
            "    {:<width$}  {} ({})",
            escape_control(&p.name),
            escape_control(&p.description),
            escape_control(&facts.join(", "))
        );
    }
}
