//! The `gantry` command line.

mod diff;
pub mod exit;
mod graph;
mod local;
pub mod output;
mod plugins;
pub mod progress;
mod remote;
mod scaffold;
mod unified;

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
    /// The daemon's API socket.
    #[arg(
        long,
        global = true,
        env = "GANTRY_SOCKET",
        default_value = "/run/gantry/gantry.sock"
    )]
    pub socket: PathBuf,
    /// Log format: journald under systemd and text otherwise (auto), or forced.
    #[arg(
        long,
        global = true,
        env = "GANTRY_LOG_FORMAT",
        value_enum,
        default_value = "auto"
    )]
    pub log_format: crate::logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every loaded plugin with its kinds, source and capabilities.
    Plugins {
        #[command(flatten)]
        out: output::Output,
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
        /// Deploy to a Kubernetes API simulator started in this process instead of any
        /// configured cluster.
        #[arg(long)]
        sim: bool,
    },
    /// What deploying a workflow would change, in full, without changing anything.
    ///
    /// Each plugin plans its task (server-side dry runs for Kubernetes objects).
    ///
    /// Exit code: 0 no changes, 1 changes, another code when the diff could not be made.
    Diff {
        workflow: String,
        /// Plan against an empty Kubernetes API simulator instead of the configured clusters.
        #[arg(long)]
        sim: bool,
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon: watch the configuration, serve the API, run deployments.
    Daemon {
        /// Embed a Kubernetes API simulator and send every cluster's traffic to it.
        #[arg(long, env = "GANTRY_SIM")]
        sim: bool,
    },
    /// Serve a Kubernetes API simulator on loopback and write a kubeconfig for it.
    Sim {
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "kubesim.kubeconfig")]
        kubeconfig: PathBuf,
        /// How long pods take to become ready.
        #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
        ready_delay: std::time::Duration,
    },
    /// Trigger a run of one or more workflows side by side (through the daemon).
    Deploy {
        #[arg(required = true)]
        workflows: Vec<String>,
        /// Follow the run with live progress and exit with its result.
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// List recent runs.
    Runs {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only runs in this state (queued, running, succeeded, failed, ...).
        #[arg(long = "status", value_name = "STATE")]
        run_state: Option<String>,
        /// Only runs that deployed this workflow.
        #[arg(long)]
        workflow: Option<String>,
        #[command(flatten)]
        out: output::Output,
    },
    /// Show a run (its id, a unique prefix of it, or `latest`) with tasks, outputs, timings.
    Show {
        run: String,
        #[command(flatten)]
        out: output::Output,
    },
    /// Print a run's task logs, or follow its progress with -f.
    Logs {
        run: String,
        /// Only this task's log, as WORKFLOW.TASK (e.g. `release.services.api`).
        task: Option<String>,
        /// Follow the run's events and log lines until it ends; exit with its result.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        out: output::Output,
    },
    /// Cancel a running run.
    Cancel { run: String },
    /// Stop tracking a task removed from its workflow (e.g. a cleanup left pending).
    Forget { workflow: String, task: String },
    /// The compiled DAG of workflows run together: what runs after what (no daemon needed).
    Plan {
        #[arg(required = true)]
        workflows: Vec<String>,
        #[command(flatten)]
        out: output::Output,
    },
    /// The DAG of workflows run together as a diagram, steps as groups, with a legend.
    Graph {
        #[arg(required = true)]
        workflows: Vec<String>,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: graph::Diagram,
    },
    /// The workflows the daemon has active.
    Workflows {
        #[command(flatten)]
        out: output::Output,
    },
    /// Re-read, validate and activate the configuration.
    Reload,
    /// The daemon's version, configuration generation, last reload, running and queued runs.
    Status {
        #[command(flatten)]
        out: output::Output,
    },
    /// The versions of this CLI and of the daemon it talks to.
    Version {
        #[command(flatten)]
        out: output::Output,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
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
    /// Create a plugin project (contract, SDK, a unit test, a build script) in a new directory.
    New {
        /// The plugin's name: its kind, its grant table `[plugins.NAME]` and its file name.
        name: String,
        #[arg(long, value_enum)]
        kind: scaffold::Kind,
        #[arg(long, value_enum, default_value = "rust")]
        lang: scaffold::Lang,
        /// Where to create it (default: ./NAME); it must not exist yet.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs the parsed command; the exit code is the process's.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Plugins { out } => plugins::list(&cli.config, &cli.state, &out).await,
        Command::Validate { dir } => {
            local::validate(dir.as_deref().unwrap_or(&cli.config), &cli.state).await
        }
        Command::Run { workflows, sim } => {
            local::run(&cli.config, &cli.state, &workflows, sim).await
        }
        Command::Diff {
            workflow,
            sim,
            json,
        } => diff::diff(&cli.config, &cli.state, &workflow, sim, json).await,
        Command::Daemon { sim } => {
            crate::service::serve::serve(crate::service::serve::ServeOptions {
                config_dir: cli.config.clone(),
                state_dir: cli.state.clone(),
                socket: cli.socket.clone(),
                sim,
            })
            .await?;
            Ok(0)
        }
        Command::Sim {
            listen,
            kubeconfig,
            ready_delay,
        } => crate::sim::serve(listen, &kubeconfig, ready_delay).await,
        Command::Deploy {
            workflows,
            wait,
            json,
        } => remote::deploy(&cli.socket, &workflows, wait, json).await,
        Command::Runs {
            limit,
            run_state,
            workflow,
            out,
        } => {
            let mut query = format!("limit={limit}");
            for (key, value) in [("state", run_state), ("workflow", workflow)] {
                if let Some(v) = value {
                    query.push_str(&format!("&{key}={}", crate::client::encode(&v)));
                }
            }
            remote::runs(&cli.socket, &query, &out).await
        }
        Command::Show { run, out } => remote::show(&cli.socket, &run, &out).await,
        Command::Logs {
            run,
            task,
            follow,
            out,
        } => remote::logs(&cli.socket, &run, task.as_deref(), follow, &out).await,
        Command::Cancel { run } => remote::cancel(&cli.socket, &run).await,
        Command::Forget { workflow, task } => remote::forget(&cli.socket, &workflow, &task).await,
        Command::Plan { workflows, out } => graph::plan(&cli.config, &workflows, &out),
        Command::Graph { workflows, format } => graph::graph(&cli.config, &workflows, format),
        Command::Workflows { out } => remote::workflows(&cli.socket, &out).await,
        Command::Reload => remote::reload(&cli.socket).await,
        Command::Status { out } => remote::status(&cli.socket, &out).await,
        Command::Version { out } => remote::version(&cli.socket, &out).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "gantry", &mut std::io::stdout());
            Ok(0)
        }
        Command::Plugin {
            command: PluginCommand::Check { file, json },
        } => plugins::check(&cli.config, &cli.state, &file, json).await,
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    kind,
                    lang,
                    dir,
                },
        } => scaffold::new_plugin(&name, kind, lang, dir.as_deref(), &cli.config),
    }
}
