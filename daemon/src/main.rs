use clap::Parser;

fn main() {
    let cli = gantry::cli::Cli::parse();
    let default_level = match cli.command {
        gantry::cli::Command::Daemon => "info",
        _ => "warn",
    };
    gantry::logging::init(cli.log_format, default_level);
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
            2
        }
    };
    std::process::exit(code);
}
