use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "originstack-operator", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, env = "OPERATOR_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let _ = cli.log_format;
    tracing_subscriber::fmt().init();
    let _ = tokio::signal::ctrl_c().await;
}
