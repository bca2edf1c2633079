//! `make demo` (scripts/demo.sh) for real: the proxy binary, three nginx-rtmp origins
//! heartbeating to it and ffmpeg publishing through it; the RTMP and HLS URLs it prints play
//! (ffprobe) with the published codecs and size, the HTTP-FLV URL gets the 404 the script
//! warns about (nginx-rtmp cannot serve FLV), the origins registered with the token in their
//! heartbeat path and the listings need it, and Ctrl-C (SIGINT) stops every process it
//! started and frees every port.

use std::{
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use originstack_e2e::{
    ChildGuard, Expect, assert_playable, free_port, free_udp_port, http_request,
};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const PLAY_TIMEOUT: Duration = Duration::from_secs(30);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo.sh")
}

/// The URL printed after `label` in the demo's "Play it" list.
fn printed_url(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|line| line.trim_start().strip_prefix(label))
        .map(|rest| rest.trim().to_string())
        .unwrap_or_else(|| panic!("no {label} URL in:\n{out}"))
}

/// Live processes in process group `group` (the demo starts each job as a group of its own).
fn members_of_group(group: u32) -> Vec<String> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let pgrp = fields.get(2).and_then(|f| f.parse::<u32>().ok());
        // A zombie has stopped; only its reaping is left.
        if pgrp == Some(group) && fields.first() != Some(&"Z") {
            members.push(head.to_string() + ")");
        }
    }
    members
}

#[test]
fn the_demo_plays_every_printed_url_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (rtmp, http, system, api) = (free_port(), free_port(), free_port(), free_port());
    let (webrtc, srt) = (free_udp_port(), free_udp_port());
    let origins: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let origin_ports = origins
        .iter()
        .map(|(r, h)| format!("{r}:{h}"))
        .collect::<Vec<_>>()
        .join(" ");
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let work = dir.path().join("work");
    // A process started in the background by a non-interactive shell (CI) inherits SIGINT
    // as ignored, and no child of it could trap Ctrl-C; env (coreutils) resets it and execs
    // bash, so the Ctrl-C path is tested everywhere.
    let mut command = Command::new("env");
    command
        .args(["--default-signal=INT", "bash"])
        .arg(script())
        .env("DEMO_PROXY_BIN", env!("CARGO_BIN_EXE_originstack-proxy"))
        .env("DEMO_RTMP_PORT", rtmp.to_string())
        .env("DEMO_HTTP_PORT", http.to_string())
        .env("DEMO_SYSTEM_PORT", system.to_string())
        .env("DEMO_API_PORT", api.to_string())
        .env("DEMO_WEBRTC_PORT", webrtc.to_string())
        .env("DEMO_SRT_PORT", srt.to_string())
        .env("DEMO_ORIGIN_PORTS", &origin_ports)
        .env("DEMO_VIDEO_SIZE", "320x240")
        .env("DEMO_DIR", &work)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut demo = ChildGuard::spawn("scripts/demo.sh", &mut command).unwrap();
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    let logs = || {
        format!(
            "stdout:\n{}\nstderr:\n{}\nproxy log:\n{}",
            read(&stdout_path),
            read(&stderr_path),
            read(&work.join("proxy.log"))
        )
    };

    let started = Instant::now();
    while !read(&stdout_path).contains("Press Ctrl-C") {
        if let Err(error) = demo.ensure_running() {
            panic!("{error}\n{}", logs());
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "the demo did not start\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = read(&stdout_path);
    let expect = Expect::h264_aac(320, 240);
    for label in ["RTMP", "HLS"] {
        let url = printed_url(&out, label);
        assert_playable(&url, &expect, PLAY_TIMEOUT)
            .unwrap_or_else(|e| panic!("{label} {url}: {e:#}\n{}", logs()));
    }
    let flv = printed_url(&out, "HTTP-FLV");
    let path = flv.split_once(&format!(":{http}")).unwrap().1;
    let (status, _) = http_request(([127, 0, 0, 1], http).into(), "GET", path, &[], "").unwrap();
    assert_eq!(
        status, 404,
        "the demo says its origins answer HTTP-FLV with 404"
    );
    assert!(out.contains("nginx-rtmp cannot serve HTTP-FLV"), "{out}");

    // The origins registered with the token in their heartbeat path; the listings need it.
    let token = read(&work.join("token")).trim().to_owned();
    let system_api = ([127, 0, 0, 1], system).into();
    let (status, _) = http_request(system_api, "GET", "/api/v1/streams", &[], "").unwrap();
    assert_eq!(status, 401, "the listings need the token");
    let bearer = format!("Bearer {token}");
    let (status, streams) = http_request(
        system_api,
        "GET",
        "/api/v1/streams",
        &[("Authorization", &bearer)],
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "{streams}");
    assert!(streams.contains("\"origin\":\"demo-origin"), "{streams}");

    let groups: Vec<u32> = read(&work.join("pids"))
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect();
    assert_eq!(
        groups.len(),
        1 + 3 * 2 + 1,
        "proxy, origins, heartbeats, ffmpeg: {groups:?}"
    );
    for &group in &groups {
        assert!(
            !members_of_group(group).is_empty(),
            "job {group} is not running"
        );
    }

    demo.signal("INT").unwrap();
    let status = demo
        .wait_timeout(Duration::from_secs(20))
        .unwrap()
        .unwrap_or_else(|| panic!("the demo did not stop on SIGINT\n{}", logs()));
    assert_eq!(status.code(), Some(130), "{}", logs());
    for group in groups {
        let left = members_of_group(group);
        assert!(
            left.is_empty(),
            "left running after the demo stopped: {left:?}"
        );
    }
    let tcp = [rtmp, http, system, api]
        .into_iter()
        .chain(origins.iter().flat_map(|&(r, h)| [r, h]));
    for port in tcp {
        TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("TCP port {port} still taken: {e}"));
    }
    for port in [webrtc, srt] {
        UdpSocket::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("UDP port {port} still taken: {e}"));
    }
    assert!(read(&stderr_path).contains("[demo] stopped"), "{}", logs());
}
