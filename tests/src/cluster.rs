//! A real one-node Kubernetes (`tests/cluster/cluster.sh`: etcd, kube-apiserver,
//! controller-manager, scheduler, containerd, kubelet, kube-proxy, CoreDNS) with the
//! OriginStack chart installed from locally built images, as a user's first hour runs it:
//! `helm install`, `kubectl apply -f examples/...`, publish to the proxy Service, play back.
//!
//! One cluster per test binary ([`Cluster::shared`]); tests isolate themselves by namespace.
//! `cluster.sh watch` holds a pipe from this process: when the process ends in any way (a
//! `static` is never dropped) the pipe closes and the cluster is torn down, leaving no process,
//! mount, network namespace, bridge, iptables chain or cgroup behind. `make cluster-up` runs
//! the same steps by hand ([`Cluster::up_by_hand`]) and `make cluster-down` undoes them.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

use crate::images::{self, TestImages};

/// Environment variable naming the origin image the tests deploy instead of the SRS stand-in
/// (e.g. a real SRS image imported into the cluster's containerd beforehand).
pub const ORIGIN_IMAGE_ENV: &str = "ORIGINSTACK_E2E_ORIGIN_IMAGE";
/// The SRS image edges run (`spec.edge.image`); the origin image when unset, which for the
/// stand-in means its edge mode (`cluster { mode remote; }` in the edge srs.conf).
pub const EDGE_IMAGE_ENV: &str = "ORIGINSTACK_E2E_EDGE_IMAGE";
/// The namespace and release name of the chart.
pub const OPERATOR_NAMESPACE: &str = "originstack-system";
pub const RELEASE: &str = "originstack";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/cluster.sh")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A running one-node cluster with the images imported.
pub struct Cluster {
    dir: PathBuf,
    env: BTreeMap<String, String>,
    images: TestImages,
    /// The write end of `cluster.sh watch`'s stdin: closing it tears the cluster down.
    lifeline: Mutex<Option<(Child, ChildStdin)>>,
}

impl Cluster {
    /// The cluster of this test binary with the chart installed, started on first use.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            let cluster = Cluster::start(true)
                .unwrap_or_else(|error| panic!("cannot start the one-node cluster: {error:#}"));
            cluster
                .install_chart()
                .unwrap_or_else(|error| panic!("cannot install the chart: {error:#}"));
            cluster
        })
    }

    /// Builds (or reuses) the images, starts the cluster in a new private directory and
    /// imports the images. With `watched`, the cluster goes when this process does.
    pub fn start(watched: bool) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("originstack-cluster-")
            .tempdir()?
            .keep();
        Self::start_in(dir, watched)
    }

    fn start_in(dir: PathBuf, watched: bool) -> anyhow::Result<Cluster> {
        let images = images::build_all(&images::standin_binary()?)?;
        let started = Instant::now();
        let mut up = Command::new(script());
        up.args(["up".as_ref(), dir.as_os_str()])
            .env("CLUSTER_PAUSE_ARCHIVE", &images.pause.archive)
            .env("CLUSTER_PAUSE_IMAGE", &images.pause.name)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Ok(assets) = crate::kube::assets_dir() {
            up.env(crate::kube::ASSETS_ENV, assets);
        }
        // The watcher first: a failed `up` is torn down too.
        let lifeline = if watched {
            let mut watch = Command::new(script())
                .args(["watch".as_ref(), dir.as_os_str()])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .context("starting cluster.sh watch")?;
            let stdin = watch.stdin.take().context("watch has no stdin")?;
            Some((watch, stdin))
        } else {
            None
        };
        let output = up.output().context("running cluster.sh up")?;
        ensure!(
            output.status.success(),
            "cluster.sh up {} failed ({})",
            dir.display(),
            output.status
        );
        let env = read_env(&dir.join("env"))?;
        let cluster = Cluster {
            dir,
            env,
            images,
            lifeline: Mutex::new(lifeline),
        };
        for image in cluster.images.workloads() {
            cluster.import(&image.archive)?;
        }
        eprintln!(
            "[cluster] one-node cluster Ready with images imported in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(cluster)
    }

    /// Tears the cluster down now (also what happens when the process ends).
    pub fn stop(&self) -> anyhow::Result<()> {
        let taken = self
            .lifeline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match taken {
            Some((mut watch, stdin)) => {
                drop(stdin);
                let status = watch.wait()?;
                ensure!(status.success(), "cluster.sh down failed ({status})");
                Ok(())
            }
            None => down(&self.dir),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn images(&self) -> &TestImages {
        &self.images
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(&self.env["KUBECONFIG"])
    }

    /// The kubectl built from the pinned Kubernetes module.
    pub fn kubectl_path(&self) -> PathBuf {
        PathBuf::from(&self.env["KUBECTL"])
    }

    /// The node's address (NodePorts answer there; ClusterIPs answer from this machine too).
    pub fn node_ip(&self) -> &str {
        &self.env["NODE_IP"]
    }

    /// The origin image the tests deploy: `$ORIGINSTACK_E2E_ORIGIN_IMAGE` or the stand-in.
    pub fn origin_image(&self) -> String {
        std::env::var(ORIGIN_IMAGE_ENV).unwrap_or_else(|_| self.images.origin.name.clone())
    }

    pub fn edge_image(&self) -> String {
        std::env::var(EDGE_IMAGE_ENV).unwrap_or_else(|_| self.origin_image())
    }

    /// Imports a docker-archive into the kubelet's containerd namespace.
    pub fn import(&self, archive: &Path) -> anyhow::Result<()> {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(&self.env["CONTAINERD_ADDRESS"])
            .args(["-n", "k8s.io", "images", "import"])
            .arg(archive)
            .output()
            .context("running ctr images import")?;
        ensure!(
            output.status.success(),
            "ctr images import {}: {}",
            archive.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// Runs kubectl with the admin kubeconfig; its stdout.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.kubectl_with_input(args, None)
    }

    /// Runs kubectl with `input` on stdin (e.g. `apply -f -`).
    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
        run(
            Command::new(self.kubectl_path())
                .arg(format!("--kubeconfig={}", self.kubeconfig().display()))
                .args(args),
            input,
        )
        .with_context(|| format!("kubectl {}", args.join(" ")))
    }

    /// `kubectl patch --type=merge` of one object.
    pub fn patch(&self, object: &str, namespace: &str, patch: &Value) -> anyhow::Result<()> {
        let patch = patch.to_string();
        self.kubectl(&[
            "patch",
            object,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            &patch,
        ])?;
        Ok(())
    }

    /// `kubectl get ... -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl(&all)?)?)
    }

    /// Runs helm with the admin kubeconfig.
    pub fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        run(
            Command::new(&self.env["HELM"])
                .arg(format!("--kubeconfig={}", self.kubeconfig().display()))
                .args(args),
            None,
        )
        .with_context(|| format!("helm {}", args.join(" ")))
    }

    /// `helm install` of the repository's chart with the locally built operator image, then
    /// waits for the operator pod to be Ready (with the chart's RBAC, as users run it).
    pub fn install_chart(&self) -> anyhow::Result<()> {
        let (repository, tag) = self
            .images
            .operator
            .name
            .rsplit_once(':')
            .context("operator image without a tag")?;
        let chart = repo().join("charts/originstack");
        self.helm(&[
            "install",
            RELEASE,
            &chart.to_string_lossy(),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--set",
            &format!("image.repository={repository}"),
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            "logging.format=text",
            "--wait",
            "--timeout",
            "180s",
        ])?;
        Ok(())
    }

    /// `helm uninstall`; waits until the operator's pods are gone.
    pub fn uninstall_chart(&self) -> anyhow::Result<()> {
        self.helm(&[
            "uninstall",
            RELEASE,
            "--namespace",
            OPERATOR_NAMESPACE,
            "--wait",
            "--timeout",
            "120s",
        ])?;
        Ok(())
    }

    /// A new namespace named `{prefix}-{n}`.
    pub fn create_namespace(&self, prefix: &str) -> anyhow::Result<String> {
        static NEXT: Mutex<u32> = Mutex::new(0);
        let n = {
            let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        let name = format!("{prefix}-{n}");
        self.kubectl(&["create", "namespace", &name])?;
        // The ServiceAccount controller creates `default`; pods cannot be created before.
        self.wait_for(
            &format!("namespace {name}'s default ServiceAccount"),
            Duration::from_secs(30),
            || {
                Ok(self
                    .kubectl(&["get", "serviceaccount", "default", "-n", &name])
                    .is_ok())
            },
        )?;
        Ok(name)
    }

    /// Applies an example's documents in `namespace`, with each OriginCluster's origin, edge
    /// and Redis images set to the locally built ones (the only change: the examples name public
    /// images this machine cannot pull). `adjust` may change each OriginCluster further.
    /// Returns the OriginCluster names.
    pub fn apply_example(
        &self,
        example: &Path,
        namespace: &str,
        adjust: impl Fn(&mut Value),
    ) -> anyhow::Result<Vec<String>> {
        let text = std::fs::read_to_string(example)
            .with_context(|| format!("reading {}", example.display()))?;
        let mut names = Vec::new();
        let mut documents = Vec::new();
        for mut document in crate::helm::documents(&text)? {
            if document["kind"] == "OriginCluster" {
                self.use_local_images(&mut document);
                adjust(&mut document);
                names.push(
                    document["metadata"]["name"]
                        .as_str()
                        .context("OriginCluster without a name")?
                        .to_owned(),
                );
            }
            documents.push(serde_json::to_string(&document)?);
        }
        self.kubectl_with_input(
            &["apply", "-n", namespace, "-f", "-"],
            Some(&documents.join("\n---\n")),
        )?;
        Ok(names)
    }

    /// Points an OriginCluster at the images imported here.
    pub fn use_local_images(&self, cluster: &mut Value) {
        let spec = &mut cluster["spec"];
        spec["origin"]["image"] = Value::from(self.origin_image());
        if spec["edge"].is_object() {
            spec["edge"]["image"] = Value::from(self.edge_image());
        }
        if spec["redis"]["mode"] == "managed" {
            spec["redis"]["managed"]["image"] = Value::from(self.images.redis.name.clone());
        }
    }

    /// Waits for the OriginCluster's Ready condition to be True; its status.
    pub fn wait_ready(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let mut last = Value::Null;
        let ready = self.wait_for(
            &format!("OriginCluster {namespace}/{name} Ready"),
            timeout,
            || {
                last = self.get_json(&["origincluster", name, "-n", namespace])?;
                let generation = &last["metadata"]["generation"];
                Ok(last["status"]["observedGeneration"] == *generation
                    && condition(&last, "Ready").is_some_and(|c| c["status"] == "True"))
            },
        );
        if let Err(error) = ready {
            bail!(
                "{error:#}\nlast status: {}\npods:\n{}\nevents:\n{}",
                serde_json::to_string_pretty(&last["status"]).unwrap_or_default(),
                self.kubectl(&["get", "pods", "-n", namespace, "-o", "wide"])
                    .unwrap_or_default(),
                self.kubectl(&["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"])
                    .unwrap_or_default()
            );
        }
        Ok(last)
    }

    /// Polls `check` every 500 ms until it returns true; an error from `check` is retried
    /// (the API is eventually consistent) and reported on timeout.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        loop {
            match check() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) => last_error = Some(error),
            }
            if Instant::now() >= deadline {
                match last_error {
                    Some(error) => {
                        bail!("timed out after {timeout:?} waiting for {what}: {error:#}")
                    }
                    None => bail!("timed out after {timeout:?} waiting for {what}"),
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Pods of one component (`origin`, `proxy`, `redis`) of an OriginCluster.
    pub fn pods(
        &self,
        namespace: &str,
        cluster: &str,
        component: &str,
    ) -> anyhow::Result<Vec<Value>> {
        let selector =
            format!("originstack.dev/cluster={cluster},app.kubernetes.io/component={component}");
        let list = self.get_json(&["pods", "-n", namespace, "-l", &selector])?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// `ClusterIP:port` of a Service port, reachable from this machine through kube-proxy.
    pub fn service_address(
        &self,
        namespace: &str,
        service: &str,
        port: &str,
    ) -> anyhow::Result<String> {
        let svc = self.get_json(&["service", service, "-n", namespace])?;
        let ip = svc["spec"]["clusterIP"]
            .as_str()
            .context("service without a ClusterIP")?;
        let number = svc["spec"]["ports"]
            .as_array()
            .and_then(|ports| ports.iter().find(|p| p["name"] == port))
            .and_then(|p| p["port"].as_u64())
            .with_context(|| format!("service {service} has no port {port}"))?;
        Ok(format!("{ip}:{number}"))
    }

    /// The tail of a component's log (for failure messages).
    pub fn component_log(&self, component: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join("logs").join(format!("{component}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `make cluster-up`: a cluster in `dir` that stays after this process, the chart
    /// installed, `examples/minimal.yaml` applied in `namespace` and Ready; writes `dir/env`
    /// with how to reach it (see docs/local-cluster.md).
    pub fn up_by_hand(dir: &Path, namespace: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let cluster_dir = dir.join("node");
        let cluster = Self::start_in(cluster_dir, false)?;
        cluster.install_chart()?;
        cluster.kubectl(&["create", "namespace", namespace])?;
        let names =
            cluster.apply_example(&repo().join("examples/minimal.yaml"), namespace, |_| {})?;
        let name = names
            .first()
            .context("examples/minimal.yaml has no OriginCluster")?;
        cluster.wait_ready(namespace, name, Duration::from_secs(180))?;
        let service = format!("{name}-proxy");
        let rtmp = cluster.service_address(namespace, &service, "rtmp")?;
        let http = cluster.service_address(namespace, &service, "http")?;
        let env = format!(
            "KUBECONFIG={}\nKUBECTL={}\nHELM={}\nNAMESPACE={namespace}\nCLUSTER={name}\nPROXY_RTMP={rtmp}\nPROXY_HTTP={http}\nCLUSTER_DIR={}\n",
            cluster.kubeconfig().display(),
            cluster.kubectl_path().display(),
            cluster.env["HELM"],
            cluster.dir.display(),
        );
        std::fs::write(dir.join("env"), &env)?;
        print!("{env}");
        Ok(())
    }

    /// `make cluster-down`: tears down what [`Self::up_by_hand`] left in `dir`.
    pub fn down_by_hand(dir: &Path) -> anyhow::Result<()> {
        let node = dir.join("node");
        if node.exists() {
            down(&node)?;
        }
        let _ = std::fs::remove_file(dir.join("env"));
        Ok(())
    }
}

/// A status condition of an object by type.
pub fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn down(dir: &Path) -> anyhow::Result<()> {
    let status = Command::new(script())
        .args(["down".as_ref(), dir.as_os_str()])
        .status()
        .context("running cluster.sh down")?;
    ensure!(
        status.success(),
        "cluster.sh down {} failed ({status})",
        dir.display()
    );
    Ok(())
}

fn read_env(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

fn run(command: &mut Command, input: Option<&str>) -> anyhow::Result<String> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    if let Some(input) = input {
        child
            .stdin
            .take()
            .context("no stdin")?
            .write_all(input.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "{} ({}): {}",
        String::from_utf8_lossy(&output.stderr).trim(),
        output.status,
        String::from_utf8_lossy(&output.stdout).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
