//! The machine as SRS sees it: its addresses, CPU and memory load (from /proc), random ids.

use std::{
    collections::HashSet,
    ffi::CStr,
    io::Read as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

/// The machine's addresses in the order SRS lists them (`retrieve_local_ips`,
/// `srs_protocol_utility.cpp` l. 710-795): IPv4 of interfaces up and running that are neither
/// loopback nor point-to-point, then such IPv6 (not promiscuous either), and only when there
/// are none, IPv4 loopback. SRS's heartbeat takes the first (`stats.network` 0).
pub fn local_ips() -> Vec<IpAddr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut entries = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr of its family.
        let address = unsafe {
            match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(entry.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(entry.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        entries.push((entry.ifa_flags, address));
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };

    let flag = |flags: u32, f: i32| flags & f as u32 != 0;
    let ready = |flags: u32| flag(flags, libc::IFF_UP) && flag(flags, libc::IFF_RUNNING);
    let mut ips: Vec<IpAddr> = entries
        .iter()
        .filter(|(flags, ip)| {
            ip.is_ipv4()
                && ready(*flags)
                && !flag(*flags, libc::IFF_LOOPBACK)
                && !flag(*flags, libc::IFF_POINTOPOINT)
        })
        .map(|(_, ip)| *ip)
        .collect();
    ips.extend(
        entries
            .iter()
            .filter(|(flags, ip)| {
                ip.is_ipv6()
                    && ready(*flags)
                    && !flag(*flags, libc::IFF_LOOPBACK)
                    && !flag(*flags, libc::IFF_POINTOPOINT)
                    && !flag(*flags, libc::IFF_PROMISC)
            })
            .map(|(_, ip)| *ip),
    );
    if ips.is_empty() {
        ips.extend(
            entries
                .iter()
                .filter(|(flags, ip)| {
                    ip.is_ipv4()
                        && ready(*flags)
                        && !flag(*flags, libc::IFF_POINTOPOINT)
                        && !flag(*flags, libc::IFF_PROMISC)
                })
                .map(|(_, ip)| *ip),
        );
    }
    ips
}

/// `srs_random_str` (`srs_protocol_utility.cpp` l. 162): digits weighted as SRS weights them
/// (its table repeats them five times), then lower-case letters.
pub fn random_str(len: usize) -> String {
    const TABLE: &[u8] =
        b"01234567890123456789012345678901234567890123456789abcdefghijklmnopqrstuvwxyz";
    let mut bytes = vec![0u8; len * 2];
    let from_kernel = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !from_kernel {
        // No /dev/urandom (an odd container): the clock and pid still differ per start.
        let mut seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32);
        for byte in &mut bytes {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *byte = seed as u8;
        }
    }
    bytes
        .chunks(2)
        .map(|pair| {
            let n = usize::from(u16::from_le_bytes([pair[0], pair[1]]));
            char::from(TABLE[n % TABLE.len()])
        })
        .collect()
}

/// Milliseconds since the Unix epoch (SRS's `now_ms`).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Clock ticks per second of /proc's times (`_SC_CLK_TCK`).
fn user_hz() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Fields of /proc/PID/stat after the command name: (ppid, utime+stime, cutime+cstime).
fn proc_stat(pid: u32) -> Option<(u32, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n).and_then(|f| f.parse::<u64>().ok());
    // state is field 3 of the file, so index 0 here; utime is 14 → 11.
    Some((
        field(1)? as u32,
        field(11)? + field(12)?,
        field(13)? + field(14)?,
    ))
}

/// Resident memory of a process in KiB (VmRSS).
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `cpu` totals of /proc/stat: (total, idle) ticks.
fn system_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(9) // user nice sys idle iowait irq softirq steal guest, as SRS reads them
        .filter_map(|v| v.parse().ok())
        .collect();
    // SrsProcSystemStat::total() leaves guest out (it is inside user already).
    let total = values.iter().take(8).sum();
    Some((total, *values.get(3)?))
}

fn meminfo() -> Option<(u64, u64, u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((
        get("MemTotal:")?,
        get("MemAvailable:").or_else(|| get("MemFree:"))?,
        get("SwapTotal:").unwrap_or(0),
        get("SwapFree:").unwrap_or(0),
    ))
}

/// The load figures, sampled periodically as SRS samples them (`srs_update_proc_stat`,
/// `srs_app_utility.cpp` l. 407): CPU as a fraction of one core (SRS's "percent" is
/// `ticks / user_hz / seconds`, so 0.5 is half a core) over the last sampling period.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub ok: bool,
    /// The stand-in with nginx and its ffmpegs: the processes doing what one SRS does.
    pub self_cpu: f64,
    pub system_cpu: f64,
    pub self_mem_kb: u64,
    pub ppid: u32,
    last_self_ticks: u64,
    last_system: (u64, u64),
    last_at: Option<Instant>,
}

impl Sample {
    /// Takes a new sample; `children` are the live child processes.
    pub fn update(&mut self, children: &HashSet<u32>) {
        let now = Instant::now();
        let me = std::process::id();
        let Some((ppid, own, reaped)) = proc_stat(me) else {
            self.ok = false;
            return;
        };
        let ticks = own
            + reaped
            + children
                .iter()
                .filter_map(|&pid| proc_stat(pid).map(|(_, t, _)| t))
                .sum::<u64>();
        let system = system_ticks();
        if let Some(last_at) = self.last_at {
            let seconds = now.duration_since(last_at).as_secs_f64();
            if seconds > 0.0 {
                let used = ticks.saturating_sub(self.last_self_ticks) as f64;
                self.self_cpu = used / user_hz() / seconds;
            }
            if let Some((total, idle)) = system {
                let total_delta = total.saturating_sub(self.last_system.0);
                if total_delta > 0 {
                    let idle_delta = idle.saturating_sub(self.last_system.1);
                    self.system_cpu = 1.0 - idle_delta as f64 / total_delta as f64;
                }
            }
        }
        self.last_self_ticks = ticks;
        self.last_system = system.unwrap_or_default();
        self.last_at = Some(now);
        self.self_mem_kb = rss_kb(me) + children.iter().map(|&pid| rss_kb(pid)).sum::<u64>();
        self.ppid = ppid;
        self.ok = system.is_some();
    }
}

/// `/api/v1/summaries` data, laid out as `srs_api_dump_summaries` (`srs_app_utility.cpp`
/// l. 1271) lays it out. Fields SRS fills from samplers the stand-in has no equivalent of
/// (disk and network counters) are left out rather than invented.
pub fn summaries(
    sample: &Sample,
    version: &str,
    argv: &str,
    cwd: &str,
    uptime_secs: u64,
) -> serde_json::Value {
    let (mem_total, mem_available, swap_total, swap_free) = meminfo().unwrap_or_default();
    let ratio = |part: u64, whole: u64| {
        if whole > 0 {
            part as f64 / whole as f64
        } else {
            0.0
        }
    };
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<f64> = loadavg
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect();
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let uptime: Vec<f64> = uptime
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let (cpus, cpus_online) = unsafe {
        (
            libc::sysconf(libc::_SC_NPROCESSORS_CONF),
            libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
        )
    };
    serde_json::json!({
        "data": {
            "ok": sample.ok,
            "now_ms": now_ms(),
            "self": {
                "version": version,
                "pid": std::process::id(),
                "ppid": sample.ppid,
                "argv": argv,
                "cwd": cwd,
                "mem_kbyte": sample.self_mem_kb,
                "mem_percent": ratio(sample.self_mem_kb, mem_total),
                "cpu_percent": sample.self_cpu,
                "srs_uptime": uptime_secs,
            },
            "system": {
                "cpu_percent": sample.system_cpu,
                "mem_ram_kbyte": mem_total,
                "mem_ram_percent": ratio(mem_total.saturating_sub(mem_available), mem_total),
                "mem_swap_kbyte": swap_total,
                "mem_swap_percent": ratio(swap_total.saturating_sub(swap_free), swap_total),
                "cpus": cpus,
                "cpus_online": cpus_online,
                "uptime": uptime.first().copied().unwrap_or(0.0),
                "ilde_time": uptime.get(1).copied().unwrap_or(0.0),
                "load_1m": load.first().copied().unwrap_or(0.0),
                "load_5m": load.get(1).copied().unwrap_or(0.0),
                "load_15m": load.get(2).copied().unwrap_or(0.0),
            },
        }
    })
}

/// The name of a signal for log lines.
pub fn signal_name(signal: i32) -> String {
    // SAFETY: strsignal returns a static or thread-local string for any number.
    let name = unsafe { libc::strsignal(signal) };
    if name.is_null() {
        return format!("signal {signal}");
    }
    // SAFETY: non-null, NUL-terminated.
    unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_use_srs_alphabet() {
        let id = random_str(8);
        assert_eq!(id.len(), 8);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        );
        assert_ne!(random_str(16), random_str(16));
    }

    #[test]
    fn this_process_is_sampled() {
        let mut sample = Sample::default();
        sample.update(&HashSet::new());
        // Burn a little CPU so the second sample sees some.
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 200 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        sample.update(&HashSet::new());
        assert!(sample.ok);
        assert!(sample.self_cpu > 0.0 && sample.self_cpu < 8.0, "{sample:?}");
        assert!(sample.self_mem_kb > 0);
        let data = summaries(&sample, "7.0.18", "srs -c x", "/", 1);
        assert!(data["data"]["self"]["cpu_percent"].as_f64().unwrap() > 0.0);
        assert!(data["data"]["system"]["mem_ram_kbyte"].as_u64().unwrap() > 0);
    }

    #[test]
    fn local_ips_exclude_loopback_when_others_exist() {
        let ips = local_ips();
        if ips.iter().any(|ip| !ip.is_loopback()) {
            assert!(ips.iter().all(|ip| !ip.is_loopback()), "{ips:?}");
        }
    }
}
