use clap::Parser;
use originstack_proxy::{config::Config, telemetry};

fn main() -> std::process::ExitCode {
    // A .env file in the working directory fills in variables the environment lacks
    // (upstream SRS proxy behaviour); a missing file is normal.
    let _ = dotenvy::dotenv();
    let config = Config::parse();
    telemetry::init(config.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(workers) = config.workers {
        runtime.worker_threads(workers.into());
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(serve(config)),
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> std::process::ExitCode {
    match originstack_proxy::lifecycle::raise_open_file_limit() {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open file limit"),
    }
    tracing::info!(
        workers = tokio::runtime::Handle::current().metrics().num_workers(),
        "async runtime started"
    );
    match originstack_proxy::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "proxy stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}
