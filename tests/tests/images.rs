//! The container images. The static checks keep what the Dockerfiles depend on in step: each
//! builds, with the release build `make test` runs (`make release-binaries`), the package whose
//! `[[bin]]` it copies, and runs it as a non-root user on a distroless base (the uid the
//! operator gives proxy pods and the chart gives the operator pod). With no Docker engine and
//! no registry here, the other tests build the images with buildah from local files
//! (`originstack_e2e::images`: the Dockerfiles themselves with a builder that already holds the
//! release binary, a local stand-in for the distroless base), look inside them, run their
//! binaries, and import them into a private containerd.

use std::{
    collections::BTreeSet,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    sync::OnceLock,
    time::{Duration, Instant},
};

use originstack_e2e::images::{self, BuiltImage, TestImages};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Dockerfile instructions (continuation lines joined, comments dropped) as (keyword, rest).
fn instructions(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (keyword, rest) = current.trim().split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// The `[[bin]]` names of a crate's Cargo.toml.
fn bins(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(value) = line.strip_prefix("name = ") {
            names.push(value.trim_matches('"').to_string());
        }
    }
    names
}

fn release_build_command() -> String {
    let output = Command::new("make")
        .args(["--no-print-directory", "-n", "release-binaries"])
        .current_dir(repo())
        .env("CARGO", "cargo")
        .output()
        .expect("make");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn check_image(crate_dir: &str, package: &str, binary: &str) {
    let dockerfile = repo().join(crate_dir).join("Dockerfile");
    let steps = instructions(&dockerfile);
    assert!(
        bins(&repo().join(crate_dir).join("Cargo.toml")).contains(&binary.to_string()),
        "{crate_dir}/Cargo.toml has no [[bin]] {binary}"
    );

    // The bases are build arguments (the tests swap them); their defaults are what users get.
    let first_from = steps.iter().position(|(k, _)| k == "FROM").unwrap();
    let defaults: Vec<(String, String)> = steps[..first_from]
        .iter()
        .filter(|(k, _)| k == "ARG")
        .filter_map(|(_, rest)| rest.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    assert_eq!(
        defaults,
        [
            (
                "BUILDER_IMAGE".to_string(),
                "docker.io/library/rust:1.95-bookworm".to_string()
            ),
            (
                "RUNTIME_IMAGE".to_string(),
                "gcr.io/distroless/cc-debian12:nonroot".to_string()
            ),
        ],
        "{}",
        dockerfile.display()
    );
    let froms: Vec<&String> = steps
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, rest)| rest)
        .collect();
    assert_eq!(
        froms,
        ["${BUILDER_IMAGE} AS build", "${RUNTIME_IMAGE}"],
        "{}: a build stage and a runtime stage",
        dockerfile.display()
    );

    let build = format!("cargo build --release --locked -p {package}");
    let run = steps
        .iter()
        .find(|(k, rest)| k == "RUN" && rest.contains("cargo build"))
        .map(|(_, rest)| rest.clone())
        .expect("a RUN with cargo build");
    assert!(run.contains(&build), "{run}");
    let make = release_build_command();
    assert!(
        make.contains("cargo build --release --locked") && make.contains(&format!("-p {package}")),
        "`make release-binaries` ({make}) must build what {} builds",
        dockerfile.display()
    );
    assert!(
        run.contains(&format!("target/release/{binary} /out/{binary}")),
        "{run}"
    );
    // The tests' builder image holds the binary already and has no cargo.
    assert!(
        run.contains(&format!("if [ ! -x /out/{binary} ]; then")) && run.ends_with("fi"),
        "{run}"
    );

    let runtime = steps
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .map(|at| &steps[at..])
        .unwrap();
    let first = |keyword: &str| {
        runtime
            .iter()
            .find(|(k, _)| k == keyword)
            .map(|(_, rest)| rest.clone())
    };
    assert_eq!(
        first("COPY"),
        Some(format!(
            "--from=build /out/{binary} /usr/local/bin/{binary}"
        ))
    );
    assert_eq!(
        first("USER").as_deref(),
        Some("65532:65532"),
        "{}",
        dockerfile.display()
    );
    assert_eq!(
        first("ENTRYPOINT"),
        Some(format!("[\"/usr/local/bin/{binary}\"]"))
    );
}

#[test]
fn the_proxy_image_builds_and_runs_what_the_release_build_makes() {
    check_image("proxy", "originstack-proxy", "originstack-proxy");
    // The operator runs proxy pods as the image's user.
    let proxy_pods =
        std::fs::read_to_string(repo().join("operator/src/reconcile/build/proxy.rs")).unwrap();
    assert!(proxy_pods.contains("run_as_user: Some(65532)"));
}

#[test]
fn the_operator_image_builds_and_runs_what_the_release_build_makes() {
    check_image("operator", "originstack-operator", "originstack-operator");
    let values = std::fs::read_to_string(repo().join("charts/originstack/values.yaml")).unwrap();
    assert!(
        values.contains("runAsUser: 65532"),
        "the chart runs the operator as the image's user"
    );
}

#[test]
fn the_build_context_leaves_out_build_outputs() {
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for entry in ["target/", ".git/", ".env"] {
        assert!(ignore.lines().any(|line| line == entry), "{entry}");
    }
}

/// The binary the origin image carries: the SRS stand-in of this crate.
fn origin_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_srs-standin"))
}

/// One `build_all` per test binary (each later call finds the archives cached anyway).
fn built() -> &'static TestImages {
    static IMAGES: OnceLock<TestImages> = OnceLock::new();
    IMAGES.get_or_init(|| {
        images::build_all(&origin_binary()).unwrap_or_else(|error| panic!("{error:#}"))
    })
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_ran(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {}\n{}{}",
        output.status,
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn ports(config: &Value) -> BTreeSet<String> {
    config["ExposedPorts"]
        .as_object()
        .map(|ports| ports.keys().cloned().collect())
        .unwrap_or_default()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| item.to_string()).collect()
}

#[test]
fn the_images_build_from_local_files_and_run_their_binaries() {
    let images = built();
    assert_eq!(images.proxy.name, images::proxy_image_name());
    assert_eq!(images.operator.name, images::operator_image_name().unwrap());
    assert_eq!(images.pause.name, images::PAUSE_IMAGE);
    // The names the product uses by default: the operator's default proxy image, the chart's
    // operator image (repository in values.yaml, tag empty: appVersion).
    let spec = std::fs::read_to_string(repo().join("operator/src/crd/spec.rs")).unwrap();
    assert!(spec.contains(
        "\"ghcr.io/originstack/originstack-proxy:\",\n        env!(\"CARGO_PKG_VERSION\")"
    ));
    let values = std::fs::read_to_string(repo().join("charts/originstack/values.yaml")).unwrap();
    assert!(values.contains("repository: ghcr.io/originstack/originstack-operator\n"));
    assert!(values.contains("tag: \"\"\n"));

    // A second call finds every archive cached.
    let started = Instant::now();
    let again = images::build_all(&origin_binary()).unwrap();
    eprintln!("cached build_all: {:.2}s", started.elapsed().as_secs_f64());
    assert_eq!(
        again.all().map(|image| image.clone()),
        images.all().map(|image| image.clone())
    );

    // Each archive is loaded back into a storage of its own, as containerd would get it.
    let buildah = images::Buildah::temporary().unwrap();
    let storage = buildah.dir().to_path_buf();
    {
        for (image, binary, exposed, cmd) in [
            (
                &images.proxy,
                "originstack-proxy",
                set(&[
                    "1935/tcp",
                    "8080/tcp",
                    "1985/tcp",
                    "12025/tcp",
                    "8000/udp",
                    "10080/udp",
                ]),
                Value::Null,
            ),
            (
                &images.operator,
                "originstack-operator",
                set(&["8080/tcp"]),
                json!(["run"]),
            ),
        ] {
            let mut container = buildah.from_archive(&image.archive).unwrap();
            let config = container.image_config().unwrap();
            let path = format!("/usr/local/bin/{binary}");
            assert_eq!(config["User"], "65532:65532", "{config}");
            assert_eq!(config["Entrypoint"], json!([path]), "{config}");
            assert_eq!(config["Cmd"], cmd, "{config}");
            assert_eq!(ports(&config), exposed, "{config}");
            let release = std::fs::read(images::release_binary(binary).unwrap()).unwrap();
            assert!(
                container.read_file(&path).unwrap() == release,
                "{path} in {} is not the release build",
                image.name
            );
            let version = container.run(&[&path, "--version"]).unwrap();
            assert_ran(&version, &image.name);
            assert_eq!(
                stdout(&version),
                format!("{binary} {}\n", env!("CARGO_PKG_VERSION"))
            );
            // distroless: no shell.
            assert!(
                !container
                    .run(&["/bin/sh", "-c", "true"])
                    .unwrap()
                    .status
                    .success()
            );
            // The base: the host's CA bundle, a sticky world-writable /tmp, nonroot's home.
            assert_eq!(
                container
                    .read_file("/etc/ssl/certs/ca-certificates.crt")
                    .unwrap(),
                std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap()
            );
            let root = container.mount().unwrap();
            let tmp = std::fs::metadata(root.join("tmp")).unwrap();
            assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
            let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
            assert!(passwd.contains("nonroot:x:65532:65532:nonroot:/home/nonroot:"));
            container.unmount().unwrap();
        }

        // Redis as the operator runs it: its args are the command, found on PATH.
        let container = buildah.from_archive(&images.redis.archive).unwrap();
        let config = container.image_config().unwrap();
        assert_eq!(config["User"], "999:999", "{config}");
        assert!(config["Entrypoint"].is_null(), "{config}");
        assert!(
            config["Env"]
                .as_array()
                .unwrap()
                .contains(&json!("PATH=/usr/local/bin:/usr/bin:/bin")),
            "{config}"
        );
        for program in ["redis-server", "redis-cli"] {
            let version = container.run(&[program, "--version"]).unwrap();
            assert_ran(&version, program);
        }
        drop(container);

        let mut container = buildah.from_archive(&images.origin.archive).unwrap();
        let config = container.image_config().unwrap();
        assert_eq!(config["WorkingDir"], "/usr/local/srs", "{config}");
        assert_eq!(
            config["Cmd"],
            json!(["./objs/srs", "-c", "conf/srs.conf"]),
            "{config}"
        );
        assert_eq!(
            ports(&config),
            set(&["1935/tcp", "1985/tcp", "8080/tcp"]),
            "{config}"
        );
        assert!(
            container.read_file("/usr/local/srs/objs/srs").unwrap()
                == std::fs::read(origin_binary()).unwrap(),
            "objs/srs is not {}",
            origin_binary().display()
        );
        // The stand-in's flags are its own (it may just start serving): the loader only lists
        // the libraries it would load, failing on one the image lacks.
        let srs = container
            .run(&["/lib64/ld-linux-x86-64.so.2", "--list", "./objs/srs"])
            .unwrap();
        assert_ran(&srs, "ld.so --list ./objs/srs");
        assert_ran(
            &container
                .run(&["ffmpeg", "-hide_banner", "-version"])
                .unwrap(),
            "ffmpeg",
        );
        let conf = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            conf.path(),
            "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n\
             events {}\n\
             rtmp { server { listen 1935; application live { live on; } } }\n",
        )
        .unwrap();
        container.copy(conf.path(), "/tmp/nginx.conf").unwrap();
        assert_ran(
            &container
                .run(&[
                    "/usr/sbin/nginx",
                    "-t",
                    "-e",
                    "stderr",
                    "-c",
                    "/tmp/nginx.conf",
                ])
                .unwrap(),
            "nginx -t with the RTMP module",
        );
        let group = String::from_utf8(container.read_file("/etc/group").unwrap()).unwrap();
        assert!(group.contains("nogroup:x:65534:"), "{group}");
        drop(container);

        let container = buildah.from_archive(&images.pause.archive).unwrap();
        let config = container.image_config().unwrap();
        assert_eq!(config["User"], "65535:65535", "{config}");
        assert_eq!(config["Entrypoint"], json!(["/pause"]), "{config}");
        let version = container.run(&["/pause", "-v"]).unwrap();
        assert_ran(&version, "pause -v");
        assert!(
            stdout(&version).starts_with("pause.c v3.10.1-"),
            "{version:?}"
        );
    }

    // Nothing is left behind: no container, no mount, not the storage itself.
    assert_eq!(buildah.containers().unwrap(), Vec::<String>::new());
    buildah.close().unwrap();
    assert!(!storage.exists());
    let root = images::storage_root().unwrap();
    assert_eq!(images::mounts_under(&root).unwrap(), Vec::<PathBuf>::new());
}

/// containerd of its own (no CRI), in a temporary directory, stopped and cleaned on drop.
struct Containerd {
    dir: tempfile::TempDir,
    process: Child,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().display().to_string();
        let config = format!(
            "version = 2\n\
             root = \"{path}/root\"\n\
             state = \"{path}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\", \
             \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", \
             \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.aufs\"]\n\
             [grpc]\n  address = \"{path}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{path}/containerd.sock.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{path}/opt\"\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let process = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (Debian package containerd)");
        let containerd = Containerd { dir, process };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !containerd.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        containerd
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `command` in a container of `image` (runc; no cgroup, so none is left behind).
    fn run(&self, image: &BuiltImage, id: &str, command: &[&str]) -> Output {
        let mut args = vec!["run", "--rm", "--cgroup", "", &image.name, id];
        args.extend_from_slice(command);
        self.ctr(&args)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SIGTERM: containerd unmounts what it mounted on the way out.
        let _ = Command::new("kill")
            .arg(self.process.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.process.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
        for point in images::mounts_under(self.dir.path()).unwrap_or_default() {
            let _ = Command::new("umount").arg("-l").arg(point).status();
        }
    }
}

#[test]
fn containerd_imports_the_archives_and_runs_them() {
    let images = built();
    let containerd = Containerd::start();
    images::import_into(&containerd.socket(), &images.all()).unwrap();
    let listed = containerd.ctr(&["images", "list", "--quiet"]);
    assert_ran(&listed, "ctr images list");
    let listed: BTreeSet<String> = stdout(&listed).lines().map(str::to_string).collect();
    for image in images.all() {
        assert!(
            listed.contains(&image.name),
            "{} not in {listed:?}",
            image.name
        );
    }
    // Unpacked for the snapshotter, each runs under runc as the kubelet would start it.
    let pause = containerd.run(&images.pause, "pause", &["/pause", "-v"]);
    assert_ran(&pause, "pause -v");
    let proxy = containerd.run(
        &images.proxy,
        "proxy",
        &["/usr/local/bin/originstack-proxy", "--version"],
    );
    assert_ran(&proxy, "originstack-proxy --version");
    let redis = containerd.run(&images.redis, "redis", &["redis-server", "--version"]);
    assert_ran(&redis, "redis-server --version");
    let operator = containerd.run(
        &images.operator,
        "operator",
        &["/usr/local/bin/originstack-operator", "--version"],
    );
    assert_ran(&operator, "originstack-operator --version");

    let dir = containerd.dir.path().to_path_buf();
    drop(containerd);
    assert_eq!(images::mounts_under(&dir).unwrap(), Vec::<PathBuf>::new());
    assert!(!dir.exists());
}
