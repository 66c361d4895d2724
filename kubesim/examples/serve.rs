//! Serves a simulator on 127.0.0.1:PORT and writes a kubeconfig for it:
//! `cargo run -p kubesim --example serve -- 8081 /tmp/kubesim.yaml`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().as_deref().unwrap_or("0").parse()?;
    let kubeconfig = args.next().unwrap_or_else(|| "kubeconfig.yaml".to_string());
    let sim = kubesim::start(kubesim::SimOptions {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        ..Default::default()
    })
    .await?;
    sim.write_kubeconfig(std::path::Path::new(&kubeconfig))?;
    println!("kubesim serving {} (kubeconfig {kubeconfig})", sim.url());
    sim.wait().await;
    Ok(())
}
