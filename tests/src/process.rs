//! Child processes that die with their guard, free loopback ports, and waiting for a port
//! to be taken.

use std::{
    collections::HashSet,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::{Child, Command},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// A running child process, killed (SIGKILL) and reaped when dropped.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `command`; `name` appears in error messages.
    pub fn spawn(name: impl Into<String>, command: &mut Command) -> anyhow::Result<Self> {
        let name = name.into();
        let child = command
            .spawn()
            .map_err(|err| anyhow::anyhow!("cannot start {name} ({command:?}): {err}"))?;
        Ok(Self {
            name,
            child: Some(child),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fails when the process has already exited (it should still be serving).
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            anyhow::bail!("{} exited early with {status}", self.name);
        }
        Ok(())
    }

    /// Sends a signal (e.g. `libc`-free "TERM", "STOP", "CONT") with the `kill` command.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {} failed", self.name);
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit by itself; returns its exit status.
    pub fn wait_timeout(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + timeout;
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Ports handed out by this process, so two parallel tests never get the same one even when
/// the first has not bound it yet.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(Default::default)
}

/// A loopback port free for both TCP and UDP right now and never handed out before by this
/// test process.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
        let port = listener.local_addr().expect("local addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        if handed_out().lock().expect("port set").insert(port) {
            return port;
        }
    }
}

/// Same as [`free_port`]; named for readability where a UDP port is meant.
pub fn free_udp_port() -> u16 {
    free_port()
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "nothing listens on {addr} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits until some process has UDP `port` bound, on loopback or any address. Read from
/// `/proc/net/udp` and `/proc/net/udp6` (Linux), so the check never takes the port itself.
pub fn wait_for_udp(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let needle = format!(":{port:04X} ");
    loop {
        let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default()
            + &std::fs::read_to_string("/proc/net/udp6").unwrap_or_default();
        let bound = table.lines().any(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|local| format!("{local} ").ends_with(&needle))
        });
        if bound {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "nothing bound UDP port {port} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An IPv4 address of this machine that is neither loopback nor link-local, for peers that
/// must be reached at an address Kubernetes accepts in an EndpointSlice (the API server
/// refuses 127.0.0.0/8 and 169.254.0.0/16 there). Connections to it stay on the machine.
/// Read from the kernel's local routing table (`/proc/net/fib_trie`, Linux).
pub fn local_address() -> anyhow::Result<Ipv4Addr> {
    let trie = std::fs::read_to_string("/proc/net/fib_trie")
        .map_err(|err| anyhow::anyhow!("cannot read /proc/net/fib_trie: {err}"))?;
    let mut candidates = local_addresses(&trie);
    candidates.sort();
    candidates
        .into_iter()
        .find(|ip| TcpListener::bind((*ip, 0)).is_ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "this machine has no IPv4 address besides loopback and link-local; tests of Kubernetes discovery need one (EndpointSlices refuse loopback)"
            )
        })
}

/// The `/32 host LOCAL` leaves of a fib_trie dump: the machine's own addresses.
fn local_addresses(trie: &str) -> Vec<Ipv4Addr> {
    let lines: Vec<&str> = trie.lines().collect();
    let mut found = Vec::new();
    for pair in lines.windows(2) {
        let (Some(leaf), true) = (
            pair[0].trim().strip_prefix("|-- "),
            pair[1].trim() == "/32 host LOCAL",
        ) else {
            continue;
        };
        if let Ok(ip) = leaf.parse::<Ipv4Addr>()
            && !ip.is_loopback()
            && !ip.is_link_local()
            && !found.contains(&ip)
        {
            found.push(ip);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_come_from_host_leaves() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
                    \x20    |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 192.0.2.2\n        /32 host LOCAL\n\
                    \x20    |-- 192.0.2.255\n        /32 link BROADCAST\n     |-- 169.254.3.4\n        /32 host LOCAL\n\
                    Local:\n     |-- 192.0.2.2\n        /32 host LOCAL\n";
        assert_eq!(local_addresses(trie), [Ipv4Addr::new(192, 0, 2, 2)]);
    }
}
