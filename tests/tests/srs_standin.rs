//! The SRS stand-in (`srs-standin`) as OriginStack uses an SRS origin: it runs the srs.conf the
//! operator generates for examples/minimal.yaml with the pod's `SRS_*` overrides, registers
//! with the real proxy through its heartbeat, and serves what is published through the proxy
//! as RTMP, HTTP-FLV and HLS; as an edge it pulls from and pushes to its origin; it refuses
//! what it cannot honour, stops on SIGTERM and dies with nginx.
//!
//! Every test starts its own processes on free ports. The proxy binary is the one the
//! workspace build left beside this test (`make test` builds it); `ORIGINSTACK_PROXY_BIN`
//! names another, and when there is none it is built once.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use originstack_e2e::{
    ChildGuard, ProxyProcess, Publisher, assert_plays_published, eventually, free_port,
    http_request, local_address, proxy_binary, wait_for_tcp,
};
use originstack_operator::render::{self, Admission, Stand};
use serde_json::Value;

const STANDIN: &str = env!("CARGO_BIN_EXE_srs-standin");

/// The srs.conf of the ConfigMap the operator renders for examples/minimal.yaml.
fn minimal_srs_conf() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/minimal.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let manifest = render::parse(&text, None, Admission::Check).unwrap();
    render::objects(&manifest, &Stand::default())
        .unwrap()
        .iter()
        .map(|object| serde_json::to_value(object).unwrap())
        .find(|o| o["kind"] == "ConfigMap" && o["data"]["srs.conf"].is_string())
        .expect("the origin ConfigMap")["data"]["srs.conf"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// One running stand-in, in a working directory of its own laid out as the SRS image's
/// (`./objs`), its stderr in a file; killed on drop.
struct StandIn {
    process: ChildGuard,
    dir: tempfile::TempDir,
    rtmp: u16,
    http: u16,
    api: u16,
}

impl StandIn {
    /// Runs `./objs/srs -c srs.conf` as the operator's pods do, with `conf` and every listen
    /// moved to a free port by SRS's own variables, plus `envs`.
    fn start(conf: &str, envs: &[(&str, String)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("srs-standin-test-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("objs")).unwrap();
        std::fs::write(dir.path().join("srs.conf"), conf).unwrap();
        let (rtmp, http, api) = (free_port(), free_port(), free_port());
        let mut command = Command::new(STANDIN);
        command
            .args(["-c", "srs.conf"])
            .current_dir(dir.path())
            // Only what a pod would set: no stray SRS_* of the caller.
            .env_clear()
            .env("SRS_LISTEN", rtmp.to_string())
            .env("SRS_HTTP_SERVER_LISTEN", http.to_string())
            .env("SRS_HTTP_API_LISTEN", api.to_string())
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
        let process = ChildGuard::spawn("srs-standin", &mut command).unwrap();
        let standin = Self {
            process,
            dir,
            rtmp,
            http,
            api,
        };
        let ready = eventually(Duration::from_secs(20), || {
            matches!(standin.get("/api/v1/versions"), Ok((200, _)))
        });
        assert!(ready, "stand-in not ready; its log:\n{}", standin.log());
        standin
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http_request(loopback(self.api), "GET", path, &[], "")
    }

    fn api(&self, path: &str) -> Value {
        let (status, body) = self.get(path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The stream `live/{name}` as /api/v1/streams lists it, if it does.
    fn stream(&self, name: &str) -> Option<Value> {
        self.api("/api/v1/streams")["streams"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name && s["app"] == "live")
            .cloned()
    }

    fn wait_published(&self, name: &str) -> Value {
        let mut found = None;
        let published = eventually(Duration::from_secs(20), || {
            found = self.stream(name);
            found
                .as_ref()
                .is_some_and(|s| s["publish"]["active"] == true && !s["video"].is_null())
        });
        assert!(
            published,
            "live/{name} not published; streams: {}\nlog:\n{}",
            self.api("/api/v1/streams"),
            self.log()
        );
        found.unwrap()
    }

    fn rtmp_url(&self, stream: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{stream}", self.rtmp)
    }

    fn flv_url(&self, stream: &str) -> String {
        format!("http://127.0.0.1:{}/live/{stream}.flv", self.http)
    }

    /// SIGTERM, as the kubelet stops a pod; the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        self.process.signal("TERM").unwrap();
        self.process
            .wait_timeout(Duration::from_secs(15))
            .unwrap()
            .unwrap_or_else(|| panic!("still running 15 s after SIGTERM; log:\n{}", self.log()))
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        // Stopped as the kubelet stops a pod, so it stops nginx and removes its private
        // directory; the guard's SIGKILL follows only if that hangs.
        if self.process.ensure_running().is_ok() && self.process.signal("TERM").is_ok() {
            let _ = self.process.wait_timeout(Duration::from_secs(10));
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// Runs the stand-in to its end with `args` in a directory holding `conf` as srs.conf.
fn run_to_end(conf: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("srs.conf"), conf).unwrap();
    let output = Command::new(STANDIN)
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_operators_origin_config_registers_and_serves_through_the_proxy() {
    let token = "5e1f0c3a9b7d42e68f0a1b2c3d4e5f60".to_owned();
    let proxy =
        ProxyProcess::start(proxy_binary(), &[("PROXY_REGISTER_TOKEN", token.clone())]).unwrap();
    let ip = local_address().unwrap();
    let conf = minimal_srs_conf();
    assert!(conf.contains("heartbeat {"), "{conf}");
    // What the operator sets in the origin Deployment, with this machine's names.
    let mut standin = StandIn::start(
        &conf,
        &[
            (
                "SRS_HEARTBEAT_URL",
                format!(
                    "http://127.0.0.1:{}/api/v1/srs/register/{token}",
                    proxy.system.port()
                ),
            ),
            ("SRS_HEARTBEAT_DEVICE_ID", "live-origin-6d5c8-x7k2p".into()),
            ("SRS_SERVER_ID", "live-origin-6d5c8-x7k2p".into()),
            ("SRS_DEVICE_IP", ip.to_string()),
            // The file says 9 s; a quicker beat keeps the test short.
            ("SRS_HEARTBEAT_INTERVAL", "2".into()),
        ],
    );

    let versions = standin.api("/api/v1/versions");
    assert_eq!(versions["code"], 0);
    assert_eq!(versions["server"], "live-origin-6d5c8-x7k2p");
    assert_eq!(versions["data"]["major"], 7);
    assert_eq!(versions["pid"], standin.process.pid().to_string());

    let registered = eventually(Duration::from_secs(15), || {
        proxy
            .origin_servers(Some(&token))
            .is_ok_and(|servers| servers == ["live-origin-6d5c8-x7k2p"])
    });
    assert!(
        registered,
        "not registered; proxy log:\n{}\nstand-in log:\n{}",
        proxy.log(),
        standin.log()
    );
    // The listings need a token once one guards registration.
    let bearer = format!("Bearer {token}");
    let (_, listing) = http_request(
        proxy.system,
        "GET",
        "/api/v1/origins",
        &[("Authorization", &bearer)],
        "",
    )
    .unwrap();
    let listing: Value = serde_json::from_str(&listing).unwrap();
    // The heartbeat as SRS 7 sends it: SRS_DEVICE_IP, the listens, the summaries.
    let origin = &listing["data"][0];
    assert_eq!(origin["ip"], ip.to_string(), "{origin}");
    assert_eq!(origin["device_id"], "live-origin-6d5c8-x7k2p");
    assert_eq!(origin["pid"], standin.process.pid().to_string());
    let endpoint = |port: u16| serde_json::json!([format!("{ip}:{port}")]);
    assert_eq!(
        origin["endpoints"]["rtmp"],
        endpoint(standin.rtmp),
        "{origin}"
    );
    assert_eq!(
        origin["endpoints"]["http"],
        endpoint(standin.http),
        "{origin}"
    );
    assert_eq!(
        origin["endpoints"]["api"],
        endpoint(standin.api),
        "{origin}"
    );
    assert!(
        origin["summaries"]["data"]["self"]["cpu_percent"].is_number(),
        "{origin}"
    );

    let stream = "standin-e2e";
    let mut publisher = Publisher::looping_sample(proxy.rtmp_url("live", stream)).unwrap();
    publisher.wait_sending(Duration::from_secs(20)).unwrap();
    let reported = standin.wait_published(stream);
    assert_eq!(reported["video"]["codec"], "H264");
    assert_eq!(reported["video"]["width"], 320);
    assert_eq!(reported["audio"]["codec"], "AAC");
    assert_eq!(reported["url"], format!("/live/{stream}"));
    assert!(reported["id"].as_str().unwrap().starts_with("vid-"));

    let through_proxy = |path: &str| format!("http://{}{path}", proxy.http);
    assert_plays_published(&through_proxy(&format!("/live/{stream}.flv")))
        .unwrap_or_else(|err| panic!("{err:#}\nstand-in log:\n{}", standin.log()));
    assert_plays_published(&through_proxy(&format!("/live/{stream}.m3u8")))
        .unwrap_or_else(|err| panic!("{err:#}\nstand-in log:\n{}", standin.log()));
    assert_plays_published(&proxy.rtmp_url("live", stream)).unwrap();

    // HLS straight from the stand-in: SRS's hls_ctx session playlist first.
    let (status, body) = http_request(
        loopback(standin.http),
        "GET",
        &format!("/live/{stream}.m3u8"),
        &[],
        "",
    )
    .unwrap();
    assert_eq!(status, 200);
    let variant = body.lines().nth(2).unwrap_or_default().to_owned();
    assert!(
        variant.starts_with(&format!("/live/{stream}.m3u8?hls_ctx=")),
        "{body}"
    );
    let (status, media) = http_request(loopback(standin.http), "GET", &variant, &[], "").unwrap();
    assert_eq!(status, 200);
    assert!(media.contains(".ts?hls_ctx="), "{media}");
    let (status, _) =
        http_request(loopback(standin.http), "GET", "/live/none.m3u8", &[], "").unwrap();
    assert_eq!(status, 404);

    // Load figures come from /proc: nginx and the HTTP-FLV ffmpegs count as the origin's.
    let summaries = standin.api("/api/v1/summaries");
    assert!(summaries["data"]["self"]["mem_kbyte"].as_u64().unwrap() > 0);
    assert!(summaries["data"]["self"]["cpu_percent"].is_number());

    drop(publisher);
    let status = standin.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{}", standin.log());
    assert!(!standin.log().contains(&token), "the token is not logged");
}

#[test]
fn an_edge_pulls_from_its_origin_and_pushes_to_it() {
    let quiet = [("SRS_HEARTBEAT_ENABLED", "off".to_owned())];
    let origin = StandIn::start(&minimal_srs_conf(), &quiet);
    let edge_conf = format!(
        "listen 1935;\nmax_connections 1000;\ndaemon off;\nsrs_log_tank console;\n\
         http_api {{\n    enabled on;\n    listen 1985;\n}}\n\
         http_server {{\n    enabled on;\n    listen 8080;\n    dir ./objs/nginx/html;\n}}\n\
         vhost __defaultVhost__ {{\n    cluster {{\n        mode remote;\n        origin 127.0.0.1:{};\n    }}\n\
         \x20   http_remux {{\n        enabled on;\n        mount [vhost]/[app]/[stream].flv;\n    }}\n}}\n",
        origin.rtmp
    );
    let edge = StandIn::start(&edge_conf, &quiet);

    // Played at the edge, published at the origin: the edge pulls it.
    let mut publisher = Publisher::looping_sample(origin.rtmp_url("at-origin")).unwrap();
    publisher.wait_sending(Duration::from_secs(20)).unwrap();
    origin.wait_published("at-origin");
    assert_plays_published(&edge.rtmp_url("at-origin"))
        .unwrap_or_else(|err| panic!("{err:#}\nedge log:\n{}", edge.log()));
    assert_plays_published(&edge.flv_url("at-origin"))
        .unwrap_or_else(|err| panic!("{err:#}\nedge log:\n{}", edge.log()));

    // Published at the edge: forwarded to the origin, which serves it.
    let mut pushed = Publisher::looping_sample(edge.rtmp_url("at-edge")).unwrap();
    pushed.wait_sending(Duration::from_secs(20)).unwrap();
    origin.wait_published("at-edge");
    assert_plays_published(&origin.flv_url("at-edge"))
        .unwrap_or_else(|err| panic!("{err:#}\norigin log:\n{}", origin.log()));
}

#[test]
fn a_config_it_cannot_honour_exits_1_naming_the_directive() {
    let conf = minimal_srs_conf();
    let (code, stderr) = run_to_end(&conf, &["-t", "-c", "srs.conf"]);
    assert_eq!(code, Some(0), "{stderr}");

    let dvr = conf.replace(
        "vhost __defaultVhost__ {",
        "vhost __defaultVhost__ {\n    dvr {\n        enabled on;\n    }",
    );
    let (code, stderr) = run_to_end(&dvr, &["-c", "srs.conf"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("not supported by srs-standin: vhost.dvr enabled"),
        "{stderr}"
    );

    let (code, stderr) = run_to_end(&format!("{conf}\nnot_srs on;\n"), &["-c", "srs.conf"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("illegal directive not_srs"), "{stderr}");

    let (code, stderr) = run_to_end("listen 1935", &["-c", "srs.conf"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("line 1: unexpected end of file"),
        "{stderr}"
    );

    let (code, stderr) = run_to_end(&conf, &["-c", "missing.conf"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("missing.conf"), "{stderr}");
}

#[test]
fn nginx_dying_ends_the_standin_with_an_error() {
    let mut standin = StandIn::start(
        &minimal_srs_conf(),
        &[("SRS_HEARTBEAT_ENABLED", "off".to_owned())],
    );
    wait_for_tcp(loopback(standin.rtmp), Duration::from_secs(5)).unwrap();
    let pid = standin.process.pid();
    // Each thread lists the children it started; tokio starts them on any worker.
    let children: String = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
        .collect::<Vec<_>>()
        .join(" ");
    let nginx: Vec<PathBuf> = children
        .split_whitespace()
        .map(|child| PathBuf::from(format!("/proc/{child}/exe")))
        .filter(|exe| {
            std::fs::read_link(exe)
                .is_ok_and(|target| target.file_name().is_some_and(|n| n == "nginx"))
        })
        .collect();
    assert_eq!(nginx.len(), 1, "children {children:?}");
    let nginx_pid = nginx[0]
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let status = Command::new("kill")
        .args(["-KILL", &nginx_pid])
        .status()
        .unwrap();
    assert!(status.success());
    let status = standin
        .process
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap_or_else(|| panic!("still running after nginx died; log:\n{}", standin.log()));
    assert_eq!(status.code(), Some(1), "log:\n{}", standin.log());
    assert!(standin.log().contains("nginx"), "{}", standin.log());
}
