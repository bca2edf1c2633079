use clap::Parser;
use originstack_proxy::{config::Config, telemetry};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A .env file in the working directory fills in variables the environment lacks
    // (upstream SRS proxy behaviour); a missing file is normal.
    let _ = dotenvy::dotenv();
    let config = Config::parse();
    telemetry::init(config.log_format);
    match originstack_proxy::lifecycle::raise_open_file_limit() {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open file limit"),
    }
    match originstack_proxy::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "proxy stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}
