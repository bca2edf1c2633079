//! The nginx.conf that makes nginx with the RTMP module do the RTMP (and HLS) part of SRS.
//!
//! Pure: a [`Config`] and where things live in, the text out. nginx runs as one process
//! (`daemon off; master_process off;`), every file it writes is in the stand-in's private
//! directory except the HLS segments (SRS's `hls_path`), and its error log is the stand-in's
//! stderr.

use std::{fmt::Write as _, net::IpAddr, path::Path};

use super::conf::{Config, Endpoint};

/// Where the generated config points nginx.
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    /// The private directory (absolute): pid, lock and temp files.
    pub dir: &'a Path,
    /// `load_module` of the RTMP module; `None` for an nginx with it built in.
    pub module: Option<&'a Path>,
    /// The unix socket of nginx's HTTP server, which only serves the RTMP statistics
    /// (`/stat`); a socket in `dir` rather than a loopback port, so nothing else can take it
    /// or reach it.
    pub stat_socket: &'a Path,
    /// SRS's `hls_path`, absolute; nginx-rtmp writes `<hls_root>/<app>/<stream>.m3u8`.
    pub hls_root: Option<&'a Path>,
    /// RTMP application names nginx accepts.
    pub apps: &'a [String],
    /// Whether `[::]` can be bound: a bare `listen` port then takes IPv4 and IPv6 as SRS does.
    pub ipv6: bool,
}

/// `pull`/`push` target of an edge: SRS's `origin HOST[:PORT]`, port 1935 by default.
fn origin_url(origin: &str, app: &str) -> String {
    let has_port = match origin.rsplit_once(':') {
        Some((host, _)) => !host.is_empty() && (!host.contains(':') || host.ends_with(']')),
        None => false,
    };
    if has_port {
        format!("rtmp://{origin}/{app}")
    } else {
        format!("rtmp://{origin}:1935/{app}")
    }
}

/// nginx's `listen` for one of SRS's RTMP endpoints.
fn listen(endpoint: &Endpoint, ipv6: bool) -> String {
    match endpoint.ip {
        None if ipv6 => format!("[::]:{} ipv6only=off", endpoint.port),
        None => format!("{}", endpoint.port),
        Some(IpAddr::V4(ip)) => format!("{ip}:{}", endpoint.port),
        Some(IpAddr::V6(ip)) => format!("[{ip}]:{}", endpoint.port),
    }
}

/// Renders nginx.conf.
pub fn render(config: &Config, layout: &Layout<'_>) -> String {
    let dir = layout.dir.display();
    let mut conf = String::new();
    if let Some(module) = layout.module {
        let _ = writeln!(conf, "load_module \"{}\";", module.display());
    }
    // Every publisher and player is a connection, and so is each relay, HTTP-FLV reader (an
    // ffmpeg playing RTMP from nginx) and stat request: room beyond SRS's max_connections.
    let worker_connections = config.max_connections.saturating_add(64);
    let _ = write!(
        conf,
        r#"daemon off;
master_process off;
pid "{dir}/nginx.pid";
lock_file "{dir}/nginx.lock";
error_log stderr notice;
worker_rlimit_nofile {files};
events {{
    worker_connections {worker_connections};
}}
rtmp {{
    # Without it the module opens the compiled-in /var/log/nginx/access.log.
    access_log off;
    server {{
"#,
        files = u64::from(worker_connections) * 2 + 64,
    );
    for endpoint in &config.listens {
        let _ = writeln!(conf, "        listen {};", listen(endpoint, layout.ipv6));
    }
    let _ = writeln!(conf, "        chunk_size {};", config.chunk_size);
    let edge = config.edge_origins.as_ref().and_then(|o| o.first());
    for app in layout.apps {
        let _ = write!(
            conf,
            r#"        application {app} {{
            live on;
            record off;
            # No GOP cache in nginx-rtmp: a player starts at the next keyframe.
            wait_key on;
"#
        );
        if let (true, Some(root)) = (config.hls.enabled, layout.hls_root) {
            let _ = write!(
                conf,
                r#"            hls on;
            hls_path "{root}/{app}";
            hls_fragment {fragment}ms;
            hls_playlist_length {window}ms;
"#,
                root = root.display(),
                fragment = config.hls.fragment.as_millis().max(1),
                window = config.hls.window.as_millis().max(1),
            );
        }
        if let Some(origin) = edge {
            // An SRS edge pulls a played stream from its origin and forwards a published one
            // to it (srs_app_edge.cpp: SrsEdgeIngester, SrsEdgeForwarder).
            let url = origin_url(origin, app);
            let _ = write!(conf, "            pull {url};\n            push {url};\n");
        }
        conf.push_str("        }\n");
    }
    let stat = layout.stat_socket.display();
    let _ = write!(
        conf,
        r#"    }}
}}
http {{
    access_log off;
    client_body_temp_path "{dir}/tmp/body";
    proxy_temp_path "{dir}/tmp/proxy";
    fastcgi_temp_path "{dir}/tmp/fastcgi";
    uwsgi_temp_path "{dir}/tmp/uwsgi";
    scgi_temp_path "{dir}/tmp/scgi";
    server {{
        listen unix:{stat};
        location = /stat {{
            rtmp_stat all;
        }}
        location / {{
            return 404;
        }}
    }}
}}
"#
    );
    conf
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, path::PathBuf};

    use super::*;
    use crate::standin::conf::ConfError;

    fn config(text: &str) -> Config {
        Config::from_text(
            text,
            &mut |name: &str| Err(ConfError::Io(name.to_owned())),
            &|name| HashMap::<String, String>::new().get(name).cloned(),
        )
        .unwrap()
    }

    fn layout<'a>(apps: &'a [String], hls: Option<&'a Path>, ipv6: bool) -> Layout<'a> {
        Layout {
            dir: Path::new("/tmp/s"),
            module: Some(Path::new("/m.so")),
            stat_socket: Path::new("/tmp/s/stat.sock"),
            hls_root: hls,
            apps,
            ipv6,
        }
    }

    #[test]
    fn origin_config_has_listens_apps_and_hls() {
        let config = config(
            "listen 1935 10.0.0.5:1936 [::1]:1937; max_connections 100; \
             vhost __defaultVhost__ { hls { enabled on; hls_fragment 2; hls_window 10; } }",
        );
        let apps = ["live".to_owned(), "app".to_owned()];
        let root = PathBuf::from("/srs/objs/nginx/html");
        let conf = render(&config, &layout(&apps, Some(&root), true));
        assert!(conf.starts_with("load_module \"/m.so\";\n"));
        assert!(conf.contains("listen [::]:1935 ipv6only=off;"));
        assert!(conf.contains("listen 10.0.0.5:1936;"));
        assert!(conf.contains("listen [::1]:1937;"));
        assert!(conf.contains("worker_connections 164;"));
        assert!(conf.contains("chunk_size 60000;"));
        assert!(conf.contains("application live {") && conf.contains("application app {"));
        assert!(conf.contains("hls_path \"/srs/objs/nginx/html/live\";"));
        // hls_window is the playlist's duration in seconds, as SRS means it.
        assert!(
            conf.contains("hls_fragment 2000ms;") && conf.contains("hls_playlist_length 10000ms;")
        );
        assert!(conf.contains("listen unix:/tmp/s/stat.sock;"));
        assert!(!conf.contains("pull ") && !conf.contains("push "));
        let ipv4_only = render(&config, &layout(&apps, Some(&root), false));
        assert!(ipv4_only.contains("        listen 1935;\n"));
    }

    #[test]
    fn without_hls_no_segments_are_written() {
        let config = config("listen 1935;");
        let apps = ["live".to_owned()];
        let conf = render(&config, &layout(&apps, None, true));
        assert!(!conf.contains("hls"));
    }

    #[test]
    fn an_edge_pulls_from_and_pushes_to_its_first_origin() {
        let config = config(
            "listen 1935; vhost __defaultVhost__ { cluster { mode remote; origin 10.0.0.1:19350 b; } }",
        );
        let apps = ["live".to_owned()];
        let conf = render(&config, &layout(&apps, None, true));
        assert!(conf.contains("pull rtmp://10.0.0.1:19350/live;"), "{conf}");
        assert!(conf.contains("push rtmp://10.0.0.1:19350/live;"));
        assert!(!conf.contains("rtmp://b"));
        assert_eq!(origin_url("origin", "app"), "rtmp://origin:1935/app");
        assert_eq!(origin_url("[::1]:1936", "app"), "rtmp://[::1]:1936/app");
    }
}
