use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use kube::Client;
use originstack_operator::{
    access,
    controller::{self, ControllerOptions},
    crd,
    http::{self, Probes},
    leader::{self, LeaseConfig, LeaseLock},
    metrics::Metrics,
    reconcile::Context,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// Every flag is also an environment variable (`OPERATOR_*`).
#[derive(Debug, Parser)]
#[command(name = "originstack-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator (the default).
    Run,
    /// Print the OriginCluster CustomResourceDefinition as YAML.
    Crd,
    /// Print, as multi-document YAML, the objects the operator would apply for an
    /// OriginCluster manifest; no cluster or credentials needed. An invalid spec is reported on
    /// stderr with exit status 2.
    Render(RenderArgs),
    /// Print the Helm chart's RBAC rule templates, generated from what the code uses.
    #[command(hide = true)]
    Rbac,
}

#[derive(Debug, clap::Args)]
struct RenderArgs {
    /// The manifest: an OriginCluster, and optionally the Secrets it names (`-`: stdin).
    #[arg(short = 'f', long = "filename")]
    file: String,
    /// Namespace of the OriginCluster when its metadata names none (default: `default`).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Log format.
    #[arg(long, env = "OPERATOR_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "OPERATOR_LOG", default_value = "info,kube=warn")]
    log_filter: String,
    /// Watch OriginClusters of this namespace only (default: all namespaces).
    #[arg(long, env = "OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Reconciles running at once (0: unbounded).
    #[arg(long, env = "OPERATOR_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// Leader election on a Lease, so only one replica reconciles.
    #[arg(long, env = "OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "OPERATOR_LEASE_NAME",
        default_value = "originstack-operator"
    )]
    lease_name: String,
    /// Namespace of the leader Lease (default: the watched namespace, else the pod's).
    #[arg(long, env = "OPERATOR_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's identity in the Lease (default: the pod name plus a random suffix).
    #[arg(long, env = "OPERATOR_IDENTITY")]
    identity: Option<String>,
    /// How long an unrenewed Lease stays with its holder.
    #[arg(long, env = "OPERATOR_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// A leader that could not renew for this long steps down.
    #[arg(long, env = "OPERATOR_RENEW_DEADLINE", default_value = "10s", value_parser = humantime::parse_duration)]
    renew_deadline: Duration,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", crd::crd_yaml());
            return ExitCode::SUCCESS;
        }
        Some(Command::Rbac) => {
            print!("{}", access::helm_rules_template());
            return ExitCode::SUCCESS;
        }
        Some(Command::Render(args)) => return render(&args),
        Some(Command::Run) | None => {}
    }
    init_tracing(&cli.run);
    match run(cli.run).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn render(args: &RenderArgs) -> ExitCode {
    let text = if args.file == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(&args.file)
    };
    let text = match text {
        Ok(text) => text,
        Err(err) => {
            eprintln!("cannot read {}: {err}", args.file);
            return ExitCode::FAILURE;
        }
    };
    match originstack_operator::render::render(&text, args.namespace.as_deref()) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(args: &RunArgs) {
    let filter = EnvFilter::try_new(&args.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    let client = Client::try_default()
        .await
        .context("no Kubernetes client configuration (in-cluster or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let probes = Probes {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.http_addr))?;
    info!(addr = %args.http_addr, "serving /metrics, /healthz and /readyz");
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, http::router(probes.clone()))
            .with_graceful_shutdown(server_shutdown.cancelled_owned())
            .await
    });

    let version = client
        .apiserver_version()
        .await
        .context("the API server does not answer")?;
    info!(version = %version.git_version, "connected to the API server");
    ready.store(true, Ordering::Relaxed);

    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let options = ControllerOptions {
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        Some(identity.clone()),
    ));

    let outcome = if args.leader_election {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| args.namespace.clone())
            .unwrap_or_else(|| client.default_namespace().to_string());
        let config = LeaseConfig {
            lease_duration: args.lease_duration,
            renew_deadline: args.renew_deadline,
            ..LeaseConfig::new(namespace, args.lease_name.clone(), identity)
        };
        let lock = Arc::new(LeaseLock::new(client.clone(), config));
        match leader::acquire(lock.clone(), shutdown.clone(), metrics.clone()).await {
            None => Ok(()),
            Some(leadership) => {
                let stop = CancellationToken::new();
                let (lost, stopping) = (leadership.lost.clone(), shutdown.clone());
                let trigger = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = lost.cancelled() => {},
                        () = stopping.cancelled() => {},
                    }
                    trigger.cancel();
                });
                controller::run(ctx, &options, stop.cancelled_owned()).await;
                leadership.stop();
                if leadership.lost.is_cancelled() && !shutdown.is_cancelled() {
                    // Another replica leads now; restarting is the safe way back to standby.
                    Err(anyhow::anyhow!("lost the leader lease"))
                } else {
                    if let Err(error) = lock.release().await {
                        warn!("could not release the leader lease: {error}");
                    }
                    Ok(())
                }
            }
        }
    } else {
        controller::run(ctx, &options, shutdown.clone().cancelled_owned()).await;
        Ok(())
    };

    shutdown.cancel();
    let _ = server.await;
    info!("stopped");
    outcome
}

fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "originstack-operator".into());
    format!("{host}-{:08x}", rand::random::<u32>())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
