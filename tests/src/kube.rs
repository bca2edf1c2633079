//! A real Kubernetes control plane for tests: etcd and kube-apiserver (built by
//! `tests/k8s-assets/build.sh`) on free loopback ports, RBAC on, an admin bearer token, and
//! ServiceAccount tokens through the TokenRequest API.
//!
//! One control plane per test binary ([`ControlPlane::shared`]); tests isolate themselves with
//! [`ControlPlane::create_namespace`]. A test that restarts the API server starts its own
//! ([`ControlPlane::start`]). There are no kubelets or controllers: Deployments stay without
//! pods and status unless a test writes it.
//!
//! Each server runs under a small `bash` supervisor holding a pipe from this process: when the
//! guard is dropped, or the test process ends in any way (a `static` is never dropped), the pipe
//! closes and the supervisor kills the server and removes the scratch directory.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use ::kube::{
    Api, Client, Config,
    api::{ObjectMeta, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use anyhow::{Context as _, bail};
use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::{Namespace, ServiceAccount},
};
use tokio::sync::OnceCell;

use crate::process::free_port;

/// Environment variable naming the directory of `kube-apiserver` and `etcd` (skips the script).
pub const ASSETS_ENV: &str = "ORIGINSTACK_K8S_ASSETS";

const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// How a control plane of its own is started.
#[derive(Debug, Clone, Copy, Default)]
pub struct ControlPlaneOptions {
    /// Write an audit log (every request, metadata level) readable with
    /// [`ControlPlane::audit_events`]: what a client really asked for and was answered.
    pub audit: bool,
}

/// A running etcd + kube-apiserver pair.
pub struct ControlPlane {
    dir: PathBuf,
    options: ControlPlaneOptions,
    binaries: PathBuf,
    port: u16,
    etcd_url: String,
    admin_token: String,
    _etcd: Supervised,
    apiserver: Mutex<Option<Supervised>>,
}

impl ControlPlane {
    /// The control plane of this test binary, started on first use.
    pub async fn shared() -> &'static ControlPlane {
        static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();
        SHARED
            .get_or_try_init(ControlPlane::start)
            .await
            .unwrap_or_else(|error| panic!("cannot start the test control plane: {error:#}"))
    }

    /// A control plane of its own (e.g. for a test that restarts the API server).
    pub async fn start() -> anyhow::Result<ControlPlane> {
        Self::start_with(ControlPlaneOptions::default()).await
    }

    pub async fn start_with(options: ControlPlaneOptions) -> anyhow::Result<ControlPlane> {
        let binaries = assets_dir()?;
        // Kept on disk until the supervisors remove it: they outlive a `static` guard.
        let dir = tempfile::Builder::new()
            .prefix("originstack-k8s-")
            .tempdir()?
            .keep();
        let openssl = |args: &[&str]| -> anyhow::Result<String> {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .context("running openssl")?;
            anyhow::ensure!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        };
        // The service-account token signing key pair.
        openssl(&["genrsa", "-out", "sa.key", "2048"])?;
        openssl(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
        let admin_token = openssl(&["rand", "-hex", "24"])?;
        fs::write(
            dir.join("tokens.csv"),
            format!("{admin_token},admin,admin-uid,\"system:masters\"\n"),
        )?;

        let (client_port, peer_port) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Supervised::spawn(
            "etcd",
            &binaries.join("etcd"),
            &[
                "--name=test".into(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=test={peer_url}"),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
            &dir.join("etcd.log"),
            Some(&dir),
        )?;

        if options.audit {
            fs::write(
                dir.join("audit-policy.yaml"),
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
            )?;
        }
        let plane = ControlPlane {
            options,
            port: free_port(),
            binaries,
            etcd_url,
            admin_token,
            _etcd: etcd,
            apiserver: Mutex::new(None),
            dir,
        };
        plane.spawn_apiserver()?;
        plane.wait_ready().await?;
        Ok(plane)
    }

    fn spawn_apiserver(&self) -> anyhow::Result<()> {
        let url = self.url();
        let dir = &self.dir;
        let mut audit = Vec::new();
        if self.options.audit {
            audit.extend([
                format!(
                    "--audit-policy-file={}",
                    dir.join("audit-policy.yaml").display()
                ),
                format!("--audit-log-path={}", dir.join("audit.log").display()),
                "--audit-log-format=json".into(),
                // Written as each request completes, so a test reads what just happened.
                "--audit-log-mode=blocking".into(),
            ]);
        }
        let apiserver = Supervised::spawn(
            "kube-apiserver",
            &self.binaries.join("kube-apiserver"),
            &[
                format!("--etcd-servers={}", self.etcd_url),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={}", self.port),
                format!("--cert-dir={}", dir.join("certs").display()),
                format!("--token-auth-file={}", dir.join("tokens.csv").display()),
                "--authorization-mode=RBAC".into(),
                format!("--service-account-issuer={url}"),
                format!(
                    "--service-account-key-file={}",
                    dir.join("sa.pub").display()
                ),
                format!(
                    "--service-account-signing-key-file={}",
                    dir.join("sa.key").display()
                ),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                // No controller-manager mints tokens or creates default ServiceAccounts.
                "--disable-admission-plugins=ServiceAccount".into(),
                "--allow-privileged=true".into(),
                // Without a controller-manager nothing would clean the endpoint lease records.
                "--endpoint-reconciler-type=none".into(),
                "--profiling=false".into(),
            ]
            .into_iter()
            .chain(audit)
            .collect::<Vec<_>>(),
            &dir.join("apiserver.log"),
            None,
        )?;
        *self.apiserver.lock().unwrap_or_else(|p| p.into_inner()) = Some(apiserver);
        Ok(())
    }

    /// Waits for `/readyz` (etcd reachable, RBAC bootstrap done).
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_error = String::new();
        while Instant::now() < deadline {
            if let Some(supervised) = self
                .apiserver
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
                && supervised.exited()
            {
                bail!(
                    "kube-apiserver exited at start:\n{}",
                    self.log_tail("apiserver.log")
                );
            }
            // The serving certificate is written at start; until then there is nothing to trust.
            if self.dir.join("certs/apiserver.crt").exists() {
                match self.admin_client().await {
                    Ok(client) => {
                        let request = http::Request::get("/readyz").body(Vec::new())?;
                        match client.request_text(request).await {
                            Ok(text) if text.trim() == "ok" => return Ok(()),
                            Ok(text) => last_error = text,
                            Err(error) => last_error = error.to_string(),
                        }
                    }
                    Err(error) => last_error = format!("{error:#}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!(
            "kube-apiserver not ready after {READY_TIMEOUT:?} ({last_error}); its log:\n{}\netcd log:\n{}",
            self.log_tail("apiserver.log"),
            self.log_tail("etcd.log")
        )
    }

    fn log_tail(&self, file: &str) -> String {
        let text = fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig authenticating with `token` (the admin's by default: see [`Self::kubeconfig_path`]).
    pub fn kubeconfig_yaml(&self, token: &str) -> String {
        self.kubeconfig_yaml_in(token, None)
    }

    /// A kubeconfig whose context's default namespace is `namespace`.
    fn kubeconfig_yaml_in(&self, token: &str, namespace: Option<&str>) -> String {
        let namespace = namespace
            .map(|namespace| format!("    namespace: {namespace}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
             users:\n- name: user\n  user:\n    token: \"{token}\"\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: user\n{namespace}\
             current-context: test\n",
            server = self.url(),
            ca = self.dir.join("certs/apiserver.crt").display(),
        )
    }

    /// A kubeconfig file of the admin (system:masters), e.g. for `KUBECONFIG` of a child process.
    pub fn kubeconfig_path(&self) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("admin.kubeconfig");
        if !path.exists() {
            fs::write(&path, self.kubeconfig_yaml(&self.admin_token))?;
        }
        Ok(path)
    }

    /// A new client with the admin's rights. Build one per test: a client belongs to the tokio
    /// runtime it first ran on.
    pub async fn admin_client(&self) -> anyhow::Result<Client> {
        self.client_with_token(&self.admin_token).await
    }

    async fn client_with_token(&self, token: &str) -> anyhow::Result<Client> {
        let kubeconfig = Kubeconfig::from_yaml(&self.kubeconfig_yaml(token))?;
        let config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// Creates a namespace of its own for one test: `<prefix>-<n>`.
    pub async fn create_namespace(&self, prefix: &str) -> anyhow::Result<String> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let namespaces: Api<Namespace> = Api::all(self.admin_client().await?);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(name)
    }

    /// A client authenticated as ServiceAccount `namespace/name` (created if missing) with a
    /// token from the TokenRequest API: it has exactly the rights RBAC grants that account.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<Client> {
        let token = self.service_account_token(namespace, name).await?;
        self.client_with_token(&token).await
    }

    /// A kubeconfig file for ServiceAccount `namespace/name` (created if missing) whose
    /// default namespace is the account's, as a pod running under it sees the cluster: for
    /// `KUBECONFIG` of a child process that should have that account's rights only.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<PathBuf> {
        let token = self.service_account_token(namespace, name).await?;
        let path = self.dir.join(format!("{namespace}-{name}.kubeconfig"));
        fs::write(&path, self.kubeconfig_yaml_in(&token, Some(namespace)))?;
        Ok(path)
    }

    /// The Kubernetes user name of ServiceAccount `namespace/name`.
    pub fn service_account_user(namespace: &str, name: &str) -> String {
        format!("system:serviceaccount:{namespace}:{name}")
    }

    /// Audit events of `user` so far (needs [`ControlPlaneOptions::audit`]): one JSON object
    /// per completed request, with `verb`, `objectRef` and `responseStatus`.
    pub fn audit_events(&self, user: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        anyhow::ensure!(
            self.options.audit,
            "this control plane was started without an audit log"
        );
        let text = fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| event["user"]["username"] == user)
            .collect())
    }

    /// A token of ServiceAccount `namespace/name` (created if missing), valid for an hour.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<String> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin_client().await?, namespace);
        if accounts.get_opt(name).await?.is_none() {
            let account = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            accounts.create(&PostParams::default(), &account).await?;
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let issued = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await?;
        Ok(issued
            .status
            .context("TokenRequest answered without a token")?
            .token)
    }

    /// Stops the API server (SIGKILL) and starts it again on the same port, etcd and
    /// certificates; returns once it is ready. Clients built before keep working.
    pub async fn restart_apiserver(&self) -> anyhow::Result<()> {
        let old = self
            .apiserver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut old) = old {
            old.stop();
        }
        self.spawn_apiserver()?;
        self.wait_ready().await
    }

    /// Stops the API server without starting it again (until [`Self::restart_apiserver`]).
    pub fn stop_apiserver(&self) {
        if let Some(mut old) = self
            .apiserver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            old.stop();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The API server first: etcd's supervisor removes the directory it uses.
        self.stop_apiserver();
    }
}

/// Locates the built binaries: `$ORIGINSTACK_K8S_ASSETS`, else `tests/k8s-assets/build.sh
/// --print-path` (returns at once when they are cached, builds them otherwise). Also holds
/// `helm`, `promtool` and `crds/` (third-party CRDs for validating the chart).
pub fn assets_dir() -> anyhow::Result<PathBuf> {
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut cached = DIR.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = cached.as_ref() {
        return Ok(dir.clone());
    }
    let dir = match std::env::var_os(ASSETS_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s-assets/build.sh");
            let output = Command::new(&script)
                .arg("--print-path")
                .stderr(Stdio::inherit())
                .output()
                .with_context(|| format!("running {}", script.display()))?;
            anyhow::ensure!(
                output.status.success(),
                "{} --print-path failed ({}); run `make deps` first",
                script.display(),
                output.status
            );
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
    };
    for binary in ["kube-apiserver", "etcd"] {
        anyhow::ensure!(
            dir.join(binary).is_file(),
            "{} has no {binary}; run `make deps`",
            dir.display()
        );
    }
    *cached = Some(dir.clone());
    Ok(dir)
}

/// `promtool` (Prometheus 3.x's rule checker, built by `tests/k8s-assets/build.sh`), for
/// `promtool check rules` / `promtool test rules`. Panics (pointing at `make deps`) when the
/// assets directory cannot be found or has no `promtool`.
pub fn promtool() -> PathBuf {
    asset("promtool")
}

/// prometheus-operator's ServiceMonitor CRD (`crds/` of [`assets_dir`]). Panics like
/// [`promtool`].
pub fn servicemonitor_crd() -> PathBuf {
    asset("crds/monitoring.coreos.com_servicemonitors.yaml")
}

/// prometheus-operator's PodMonitor CRD (`crds/` of [`assets_dir`]), for the PodMonitors the
/// operator creates. Panics like [`servicemonitor_crd`].
pub fn podmonitor_crd() -> PathBuf {
    asset("crds/monitoring.coreos.com_podmonitors.yaml")
}

/// prometheus-operator's PrometheusRule CRD (`crds/` of [`assets_dir`]). Panics like
/// [`promtool`].
pub fn prometheusrule_crd() -> PathBuf {
    asset("crds/monitoring.coreos.com_prometheusrules.yaml")
}

/// `relative` in [`assets_dir`], which must be a file.
fn asset(relative: &str) -> PathBuf {
    let path = assets_dir()
        .unwrap_or_else(|e| panic!("{e:#}"))
        .join(relative);
    assert!(
        path.is_file(),
        "{} is missing; run `make deps`",
        path.display()
    );
    path
}

/// A server under a `bash` supervisor that kills it when its stdin closes (on
/// [`Supervised::stop`], on drop, or when this process dies), exits with it, and then
/// optionally removes a directory.
struct Supervised {
    name: &'static str,
    supervisor: Child,
    lifeline: Option<ChildStdin>,
}

const SUPERVISOR: &str = r#"
exec 3<&0
"$@" &
server=$!
# The pipe closes when the test process drops the guard or exits, however it exits.
{ read -r _ <&3; kill -KILL "$server" 2>/dev/null; } &
reader=$!
wait "$server"
status=$?
kill "$reader" 2>/dev/null
if [ -n "$CLEANUP_DIR" ]; then rm -rf -- "$CLEANUP_DIR"; fi
exit "$status"
"#;

impl Supervised {
    fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: &Path,
        cleanup: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let log_file = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(SUPERVISOR)
            .arg(name)
            .arg(program)
            .args(args)
            .env(
                "CLEANUP_DIR",
                cleanup
                    .map(|dir| dir.as_os_str().to_owned())
                    .unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let mut supervisor = command
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let lifeline = supervisor.stdin.take();
        Ok(Self {
            name,
            supervisor,
            lifeline,
        })
    }

    /// The server has exited (its supervisor exits with it).
    fn exited(&mut self) -> bool {
        matches!(self.supervisor.try_wait(), Ok(Some(_)))
    }

    /// Kills the server and waits for the supervisor to finish.
    fn stop(&mut self) {
        drop(self.lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.supervisor.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(server = self.name, "supervisor did not finish; killing it");
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}
