use clap::Parser;

fn main() {
    let cli = gantry::cli::Cli::parse();
    let default_level = match cli.command {
        gantry::cli::Command::Daemon { .. } | gantry::cli::Command::Sim { .. } => "info",
        _ => "warn",
    };
    // A client piped into `head` should stop quietly when the reader goes away, as other
    // command-line tools do, rather than panic on a failed print. The daemon keeps SIGPIPE
    // ignored so a closed connection is an error it can handle, and so does a local run:
    // killed by SIGPIPE it would leave its programs running with no one to stop them.
    if !matches!(
        cli.command,
        gantry::cli::Command::Daemon { .. }
            | gantry::cli::Command::Sim { .. }
            | gantry::cli::Command::Run { .. }
    ) {
        // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // Everything gantry writes (history, logs, workspaces, the compiled-plugin cache) is the
    // daemon user's alone, even under `gantry run` from an interactive shell.
    // SAFETY: umask(2) only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    // Before the runtime's threads exist, so the descriptor table grows without waiting.
    let descriptors = gantry::host::process::descriptors::prepare();
    gantry::logging::init(cli.log_format, default_level);
    if matches!(
        cli.command,
        gantry::cli::Command::Daemon { .. } | gantry::cli::Command::Run { .. }
    ) && let Some(warning) = descriptors.warning()
    {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gantry: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = match runtime.block_on(gantry::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gantry: {e:#}");
            gantry::cli::exit::of_error(&e)
        }
    };
    gantry::host::process::release_idle_cgroups();
    std::process::exit(code);
}
