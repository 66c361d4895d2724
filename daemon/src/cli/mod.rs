//! The `gantry` command line.

mod local;
mod plugins;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "gantry",
    version,
    about = "Staged, parallel deployments run by sandboxed WebAssembly plugins"
)]
pub struct Cli {
    /// Configuration directory (gantry.toml, workflows/, plugins/).
    #[arg(
        long,
        global = true,
        env = "GANTRY_CONFIG",
        default_value = "/etc/gantry"
    )]
    pub config: PathBuf,
    /// State directory (history, logs, compiled-plugin cache).
    #[arg(
        long,
        global = true,
        env = "GANTRY_STATE",
        default_value = "/var/lib/gantry"
    )]
    pub state: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every loaded plugin with its kinds, source and capabilities.
    Plugins {
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration directory (default: --config) and report every error.
    Validate { dir: Option<PathBuf> },
    /// Deploy workflows in this process, without a daemon, with live progress.
    ///
    /// Exit code: 0 succeeded, 3 succeeded with errors (failures under on_failure = "continue"),
    /// 1 failed or cancelled.
    Run {
        #[arg(required = true)]
        workflows: Vec<String>,
    },
    /// Inspect plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Load a plugin and report what it requests and why any of it would be refused.
    Check {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// Runs the parsed command; the exit code is the process's.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Plugins { json } => plugins::list(&cli.config, &cli.state, json).await,
        Command::Validate { dir } => {
            local::validate(dir.as_deref().unwrap_or(&cli.config), &cli.state).await
        }
        Command::Run { workflows } => local::run(&cli.config, &cli.state, &workflows).await,
        Command::Plugin {
            command: PluginCommand::Check { file, json },
        } => plugins::check(&cli.config, &cli.state, &file, json).await,
    }
}
