//! What a process costs, read from `/proc`: resident memory, CPU time, open descriptors; and
//! the machine's load, which every report states next to its figures.

use anyhow::Context;

/// Resident set size of `pid`, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User + system CPU time `pid` has used, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("bad /proc/{pid}/stat"))?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// utime + stime from a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its closing parenthesis.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based).
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Descriptors `pid` holds open.
pub fn open_fds(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("list /proc/{pid}/fd"))?
        .count())
}

/// Established TCP connections `pid` holds to `port` (on any address): its socket
/// descriptors matched by inode against the connection tables of its network namespace.
pub fn connections_to(pid: u32, port: u16) -> anyhow::Result<usize> {
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("list /proc/{pid}/fd"))?
    {
        // A descriptor closed meanwhile is no connection.
        let Ok(link) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        if let Some(inode) = link
            .to_str()
            .and_then(|l| l.strip_prefix("socket:["))
            .and_then(|l| l.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let mut count = 0;
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))
            .with_context(|| format!("read /proc/{pid}/net/{table}"))?;
        count += established_to(&text, port)
            .filter(|inode| inodes.contains(*inode))
            .count();
    }
    Ok(count)
}

/// The inodes of the established connections to `port` in a `/proc/net/tcp` table.
pub fn established_to(table: &str, port: u16) -> impl Iterator<Item = &str> {
    const ESTABLISHED: &str = "01";
    table.lines().skip(1).filter_map(move |line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let remote_port = fields.get(2)?.rsplit_once(':')?.1;
        let remote_port = u16::from_str_radix(remote_port, 16).ok()?;
        (remote_port == port && *fields.get(3)? == ESTABLISHED).then_some(*fields.get(9)?)
    })
}

/// Raises this process's soft descriptor limit to the hard one (children inherit it), so
/// 10,000 connections fit in the load generator and in the processes it starts. Returns the
/// limit now in force.
pub fn raise_fd_limit() -> anyhow::Result<u64> {
    originstack_proxy::lifecycle::raise_open_file_limit().context("raise RLIMIT_NOFILE")
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> anyhow::Result<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").context("read /proc/loadavg")?;
    parse_loadavg(&text).context("bad /proc/loadavg")
}

pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// CPU time and RSS of one process between two instants.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: std::time::Instant,
    pub cpu_seconds: f64,
    pub rss_kib: u64,
}

impl Sample {
    pub fn take(pid: u32) -> anyhow::Result<Self> {
        Ok(Self {
            at: std::time::Instant::now(),
            cpu_seconds: cpu_seconds(pid)?,
            rss_kib: rss_kib(pid)?,
        })
    }

    /// Share of one core used since `earlier` (1.0 = a whole core).
    pub fn cores_since(&self, earlier: &Sample) -> f64 {
        let wall = (self.at - earlier.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        (self.cpu_seconds - earlier.cpu_seconds) / wall
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_from_status() {
        let status = "Name:\tproxy\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(4321));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn reads_cpu_ticks_past_a_name_with_spaces_and_parentheses() {
        let stat = "42 (tokio (rt) w) S 1 42 42 0 -1 4194560 100 0 0 0 250 70 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(320));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn finds_established_connections_to_a_port() {
        // Header, then: established to 8080 (0x1F90), listening on 8080, established to 80.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A000 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 111 1
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1
   2: 0100007F:A001 0100007F:0050 01 00000000:00000000 00:00000000 00000000     0        0 333 1
";
        assert_eq!(established_to(table, 8080).collect::<Vec<_>>(), ["111"]);
        assert_eq!(established_to(table, 80).collect::<Vec<_>>(), ["333"]);
        assert_eq!(established_to(table, 81).count(), 0);
    }

    #[test]
    fn counts_this_process_connections() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let pid = std::process::id();
        assert_eq!(connections_to(pid, port).unwrap(), 0);
        let _a = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _b = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert_eq!(connections_to(pid, port).unwrap(), 2);
    }

    #[test]
    fn reads_load_average() {
        assert_eq!(
            parse_loadavg("0.52 1.96 1.98 2/301 5523\n"),
            Some([0.52, 1.96, 1.98])
        );
        assert_eq!(parse_loadavg("x"), None);
    }

    #[test]
    fn measures_this_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(open_fds(pid).unwrap() >= 3);
        assert!(raise_fd_limit().unwrap() >= 1024);
    }
}
