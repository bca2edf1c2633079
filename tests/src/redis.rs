//! Real `redis-server`s on free loopback ports, without persistence, each in its own temporary
//! directory; killed on drop.
//!
//! - [`RedisServer::start`]: plain TCP; `stop` / `start_again` simulate an outage on the same
//!   address.
//! - [`RedisServer::start_tls`]: TLS only, with a throwaway CA made by `openssl`.
//! - [`RedisCluster::start`]: a Redis Cluster of real nodes, slots assigned by
//!   `redis-cli --cluster create`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::process::{ChildGuard, free_port, wait_for_tcp};

pub struct RedisServer {
    port: u16,
    dir: TempDir,
    /// Arguments beyond port, persistence and paths (TLS, cluster mode).
    extra_args: Vec<String>,
    tls: bool,
    child: Option<ChildGuard>,
}

impl RedisServer {
    /// Starts `redis-server --port <free> --save '' --appendonly no` on 127.0.0.1.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(Vec::new(), false, |_| Ok(Vec::new()))
    }

    /// Starts a TLS-only server (`rediss://`) whose certificate, for 127.0.0.1, is signed by
    /// the CA in [`RedisServer::ca_file`]. Clients need no certificate of their own.
    pub fn start_tls() -> anyhow::Result<Self> {
        Self::start_with(Vec::new(), true, |dir| {
            make_certificates(dir)?;
            let path = |name: &str| dir.join(name).display().to_string();
            Ok(vec![
                "--tls-cert-file".into(),
                path("server.crt"),
                "--tls-key-file".into(),
                path("server.key"),
                "--tls-ca-cert-file".into(),
                path("ca.crt"),
                "--tls-auth-clients".into(),
                "no".into(),
            ])
        })
    }

    fn start_with(
        mut extra_args: Vec<String>,
        tls: bool,
        prepare: impl FnOnce(&Path) -> anyhow::Result<Vec<String>>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("redis-").tempdir()?;
        extra_args.extend(prepare(dir.path())?);
        let mut server = Self {
            port: free_port(),
            dir,
            extra_args,
            tls,
            child: None,
        };
        server.start_again()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>/0`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// The CA certificate (PEM) that signed a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Kills the server (SIGKILL): clients see the connection drop, data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Starts the server again on the same port (empty, as after a crash without persistence).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.stop();
        let log = self.dir.path().join("redis.log");
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        if self.tls {
            command.args(["--port", "0", "--tls-port", &port]);
        } else {
            command.args(["--port", &port]);
        }
        command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(ChildGuard::spawn(
            format!("redis-server on port {port}"),
            &mut command,
        )?);
        if let Err(err) = wait_for_tcp(self.addr(), Duration::from_secs(10)) {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            anyhow::bail!("{err}; redis log:\n{log}");
        }
        Ok(())
    }

    /// Runs `redis-cli` against this server and returns its output (for inspecting state).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.tls {
            command.arg("--tls").arg("--cacert").arg(self.ca_file());
        }
        let output = command.args(args).output()?;
        anyhow::ensure!(
            output.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// How often clients (or scripts) have called `command` so far (`INFO commandstats`),
    /// e.g. to count script round trips.
    pub fn command_calls(&self, command: &str) -> anyhow::Result<u64> {
        let info = self.cli(&["INFO", "commandstats"])?;
        let prefix = format!("cmdstat_{}:calls=", command.to_ascii_lowercase());
        Ok(info
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|calls| calls.parse().ok())
            .unwrap_or(0))
    }
}

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it (P-256 keys: fast).
fn make_certificates(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=originstack test CA",
        ],
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    for args in steps {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A Redis Cluster of `n` primaries (no replicas) on loopback, all slots assigned.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(primaries: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            primaries >= 3,
            "redis-cli --cluster create needs at least 3 primaries"
        );
        let nodes = (0..primaries)
            .map(|_| {
                // The cluster bus port is chosen explicitly: port + 10000 may be taken.
                let bus = free_port().to_string();
                let args = ["--cluster-enabled", "yes", "--cluster-port", &bus]
                    .into_iter()
                    .chain(["--cluster-config-file", "nodes.conf"])
                    .chain(["--cluster-node-timeout", "2000"])
                    .map(String::from)
                    .collect();
                RedisServer::start_with(args, false, |_| Ok(Vec::new()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let addresses: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.nodes.iter().all(|node| {
            node.cli(&["CLUSTER", "INFO"])
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        }) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the cluster did not reach state ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(cluster)
    }

    /// Seed URLs of every node, comma-separated.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("redis://{}", node.addr()))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}
