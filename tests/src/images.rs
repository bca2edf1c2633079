//! Container images for the one-node test cluster, built on this machine from local files and
//! saved as docker-archive tarballs for `ctr -n k8s.io images import`. No registry is
//! reachable here, so nothing is pulled:
//!
//! - a runtime base standing in for `gcr.io/distroless/cc-debian12:nonroot` (the host is
//!   Debian 12 too): glibc and libgcc as the release binaries link them, the loader, CA
//!   certificates, `/etc/passwd` with root, nobody and nonroot (65532), `/tmp`; no shell;
//! - the proxy and the operator, built from the project's own `proxy/Dockerfile` and
//!   `operator/Dockerfile` with a builder image that already holds the binary of
//!   `make release-binaries` (so the Dockerfile skips `cargo build`) and the base above;
//! - Debian's redis-server (and redis-cli, which the operator's readiness probe runs);
//! - the SRS stand-in with nginx, its RTMP module and ffmpeg;
//! - the pod sandbox (pause) image, compiled from the pinned Kubernetes module's `pause.c`.
//!
//! buildah runs with a private, temporary storage under `~/.cache/originstack/images/` and
//! `--isolation chroot`, so no global container storage or configuration is touched. Archives
//! are cached there, named by a hash of everything that goes into them (binaries, libraries,
//! Dockerfiles, this file), so only a changed input rebuilds; a file lock makes concurrent test
//! binaries wait for each other instead of building twice.

use std::{
    collections::BTreeSet,
    ffi::OsStr,
    fs,
    io::Read as _,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Component, Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Instant, SystemTime},
};

use anyhow::{Context as _, bail, ensure};
use sha2::{Digest as _, Sha256};

/// The sandbox image's name: the tag of `build/pause` in the pinned Kubernetes (its Makefile's
/// `TAG`, also kubeadm's `PauseVersion`). containerd's `sandbox_image` must name it, since
/// containerd 1.6 defaults to `pause:3.6`; it can never be pulled here.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10.1";
/// Where the images only the tests use are named (nothing is pushed anywhere).
pub const TEST_REPOSITORY: &str = "localhost/originstack-test";
/// The user the distroless `:nonroot` images run as, and the pods of proxy and operator.
pub const NONROOT_UID: u32 = 65532;
/// The uid the operator runs managed Redis as.
pub const REDIS_UID: u32 = 999;
/// The stand-in's ports: RTMP, HTTP API, HTTP streaming.
pub const ORIGIN_PORTS: [u16; 3] = [1935, 1985, 8080];

const PROXY: &str = "originstack-proxy";
const OPERATOR: &str = "originstack-operator";
/// Part of every cache key: a change to how images are made rebuilds them.
const RECIPE: &str = include_str!("images.rs");
/// Archives kept per image kind (older ones are deleted), so two checkouts with different
/// binaries on one machine do not delete each other's archive while it is imported.
const KEEP_ARCHIVES: usize = 2;

/// One image: its name (as the archive tags it) and its docker-archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub name: String,
    pub archive: PathBuf,
}

/// Every image the one-node cluster needs.
#[derive(Debug, Clone)]
pub struct TestImages {
    /// `ghcr.io/originstack/originstack-proxy:<workspace version>`, the operator's default.
    pub proxy: BuiltImage,
    /// `ghcr.io/originstack/originstack-operator:<chart appVersion>`, the chart's default.
    pub operator: BuiltImage,
    pub redis: BuiltImage,
    pub origin: BuiltImage,
    /// [`PAUSE_IMAGE`].
    pub pause: BuiltImage,
}

impl TestImages {
    /// The images pods run (all but the sandbox image, which containerd needs first).
    pub fn workloads(&self) -> [&BuiltImage; 4] {
        [&self.proxy, &self.operator, &self.redis, &self.origin]
    }

    pub fn all(&self) -> [&BuiltImage; 5] {
        [
            &self.proxy,
            &self.operator,
            &self.redis,
            &self.origin,
            &self.pause,
        ]
    }
}

/// Builds every image, or reuses the cached archives whose inputs did not change. The proxy
/// and operator binaries come from the release build (`make release-binaries`);
/// `origin_binary` becomes the origin image's `/usr/local/srs/objs/srs`.
pub fn build_all(origin_binary: &Path) -> anyhow::Result<TestImages> {
    let started = Instant::now();
    let cache = Cache::open()?;
    let _lock = cache.lock()?;
    let mut session = Session::new(&cache)?;
    let images = TestImages {
        pause: session.pause()?,
        proxy: session.product(PROXY, proxy_image_name())?,
        operator: session.product(OPERATOR, operator_image_name()?)?,
        redis: session.redis()?,
        origin: session.origin(origin_binary)?,
    };
    session.finish()?;
    eprintln!(
        "[images] all five ready in {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        cache.archives().display()
    );
    Ok(images)
}

/// Imports docker-archives into the `k8s.io` namespace (the kubelet's) of the containerd
/// listening on `ctr_address`, unpacked for its default snapshotter.
pub fn import_into(ctr_address: &Path, images: &[&BuiltImage]) -> anyhow::Result<()> {
    for image in images {
        let started = Instant::now();
        let output = Command::new("ctr")
            .arg("--address")
            .arg(ctr_address)
            .args(["-n", "k8s.io", "images", "import", "--all-platforms"])
            .arg(&image.archive)
            .output()
            .context("running ctr (Debian package containerd)")?;
        ensure!(
            output.status.success(),
            "ctr images import {} failed ({}): {}",
            image.archive.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!(
            "[images] imported {} in {:.1}s",
            image.name,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The proxy image the operator deploys by default (`default_proxy_image` in
/// operator/src/crd/spec.rs: the workspace version, which this crate shares).
pub fn proxy_image_name() -> String {
    format!(
        "ghcr.io/originstack/originstack-proxy:{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The operator image the chart installs by default (`image.tag` defaults to `appVersion`).
pub fn operator_image_name() -> anyhow::Result<String> {
    let path = repo().join("charts/originstack/Chart.yaml");
    let chart: serde_yaml::Value = serde_yaml::from_str(&fs::read_to_string(&path)?)
        .with_context(|| format!("parse {}", path.display()))?;
    let version = chart["appVersion"]
        .as_str()
        .with_context(|| format!("{} has no appVersion", path.display()))?;
    Ok(format!(
        "ghcr.io/originstack/originstack-operator:{version}"
    ))
}

/// The cargo target directory: `$CARGO_TARGET_DIR`, else the one holding this test binary
/// (`<target>/debug/deps/<test>`) or this crate's binary (`<target>/debug/<bin>`), else the
/// workspace's `target/`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            repo().join(dir)
        };
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(deps) = exe.parent()
        && deps.file_name() == Some(OsStr::new("deps"))
        && let Some(target) = deps.parent().and_then(Path::parent)
    {
        return target.to_path_buf();
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile) = exe.parent()
        && profile.file_name() == Some(OsStr::new("debug"))
        && let Some(target) = profile.parent()
    {
        return target.to_path_buf();
    }
    repo().join("target")
}

/// A binary of `make release-binaries` (what the Dockerfiles copy).
pub fn release_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = target_dir().join("release").join(name);
    ensure!(
        path.is_file(),
        "{} is missing: run `make release-binaries`",
        path.display()
    );
    Ok(path)
}

/// The SRS stand-in binary (`srs-standin` of this crate, debug build).
pub fn standin_binary() -> anyhow::Result<PathBuf> {
    let path = target_dir().join("debug/srs-standin");
    ensure!(
        path.is_file(),
        "{} is missing: run `cargo build -p originstack-e2e --bins`",
        path.display()
    );
    Ok(path)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `~/.cache/originstack/images` (or under `$ORIGINSTACK_CACHE`, as the Makefile): archives,
/// the lock, and the temporary buildah storages.
struct Cache {
    root: PathBuf,
}

impl Cache {
    fn open() -> anyhow::Result<Self> {
        let base = match std::env::var_os("ORIGINSTACK_CACHE") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
                .join(".cache/originstack"),
        };
        let root = base.join("images");
        for dir in [root.join("archives"), root.join("storage")] {
            fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        }
        Ok(Self { root })
    }

    fn archives(&self) -> PathBuf {
        self.root.join("archives")
    }

    /// Held while building: other test binaries wait, then find the archives made.
    fn lock(&self) -> anyhow::Result<fs::File> {
        let path = self.root.join("lock");
        let file = fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        file.lock()
            .with_context(|| format!("lock {}", path.display()))?;
        Ok(file)
    }
}

/// The root of every temporary buildah storage (see [`Buildah::temporary`]).
pub fn storage_root() -> anyhow::Result<PathBuf> {
    Ok(Cache::open()?.root.join("storage"))
}

/// Mount points at or under `dir` (from /proc/self/mounts), e.g. to check none is left.
pub fn mounts_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    Ok(mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .map(|point| PathBuf::from(unescape_mount_point(point)))
        .filter(|point| point.starts_with(dir))
        .collect())
}

/// /proc/mounts writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_point(point: &str) -> String {
    let mut out = String::new();
    let mut rest = point;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4).unwrap_or("");
        match u8::from_str_radix(code, 8) {
            Ok(byte) if code.len() == 3 => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            _ => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// buildah with a storage of its own in a new directory under [`storage_root`], removed (with
/// every container, image and mount in it) on [`Buildah::close`] or drop. A directory left by
/// a process that died is removed by the next one.
pub struct Buildah {
    dir: PathBuf,
    driver: String,
    closed: bool,
}

impl Buildah {
    pub fn temporary() -> anyhow::Result<Self> {
        let storage = storage_root()?;
        remove_abandoned_storages(&storage);
        let driver = storage_driver(&storage)?;
        Self::create(&storage, &driver)
    }

    fn create(storage: &Path, driver: &str) -> anyhow::Result<Self> {
        ensure_tool("buildah", "buildah")?;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = storage.join(format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if dir.exists() {
            remove_storage_dir(&dir)?;
        }
        fs::create_dir_all(dir.join("tmp"))?;
        // Our own storage.conf, so /etc/containers/storage.conf (mount programs, other
        // drivers' options) plays no part.
        fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"{driver}\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                dir.join("root").display(),
                dir.join("run").display()
            ),
        )?;
        Ok(Self {
            dir,
            driver: driver.to_string(),
            closed: false,
        })
    }

    /// The storage's directory (`--root` is `root/` in it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `buildah` with this storage: `--root`, `--runroot`, the driver, and TMPDIR inside it
    /// (where buildah keeps `RUN --mount=type=cache` directories and temporary files).
    pub fn command(&self) -> Command {
        let mut command = Command::new("buildah");
        command
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(["--storage-driver", &self.driver])
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env("TMPDIR", self.dir.join("tmp"))
            .env("BUILDAH_ISOLATION", "chroot")
            .env_remove("BUILDAH_LAYERS")
            .env_remove("BUILDAH_FORMAT");
        command
    }

    /// Runs buildah with `args`; its stdout, or an error with its output.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> anyhow::Result<String> {
        let output = self
            .command()
            .args(args)
            .output()
            .context("running buildah")?;
        checked("buildah", args, output)
    }

    /// A working container from an image in this storage.
    pub fn from_image(&self, image: &str) -> anyhow::Result<WorkingContainer<'_>> {
        let id = self.run(&["from", "--pull=never", "--quiet", image])?;
        Ok(WorkingContainer::new(self, id))
    }

    /// A working container from a docker-archive (loads its image into this storage).
    pub fn from_archive(&self, archive: &Path) -> anyhow::Result<WorkingContainer<'_>> {
        let source = format!("docker-archive:{}", archive.display());
        let id = self.run(&["from", "--quiet", &source])?;
        Ok(WorkingContainer::new(self, id))
    }

    /// The ids of the working containers in this storage.
    pub fn containers(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .run(&["containers", "--all", "--quiet"])?
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Removes every container (unmounting them), then the directory; fails if a mount
    /// remained.
    pub fn close(mut self) -> anyhow::Result<()> {
        self.closed = true;
        self.remove()
    }

    fn remove(&self) -> anyhow::Result<()> {
        let removed = self.run(&["rm", "--all"]);
        remove_storage_dir(&self.dir)?;
        removed.map(drop)
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        if !self.closed
            && let Err(error) = self.remove()
        {
            eprintln!("[images] removing {}: {error:#}", self.dir.display());
        }
    }
}

/// Unmounts what is left under `dir` (a container of a process that died), then removes it.
fn remove_storage_dir(dir: &Path) -> anyhow::Result<()> {
    let mut left = mounts_under(dir)?;
    // Deepest first: the overlay driver mounts its own directory and containers inside it.
    left.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    for point in &left {
        let _ = Command::new("umount").arg("-l").arg(point).status();
    }
    let still = mounts_under(dir)?;
    ensure!(
        still.is_empty(),
        "mounts left under {}: {still:?}",
        dir.display()
    );
    match fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Storages (`<pid>-<n>`) whose process is gone.
fn remove_abandoned_storages(storage: &Path) {
    let Ok(entries) = fs::read_dir(storage) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((pid, _)) = name.split_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
            && let Err(error) = remove_storage_dir(&entry.path())
        {
            eprintln!("[images] abandoned storage {name}: {error:#}");
        }
    }
}

/// overlay when this filesystem can carry it (one probe, remembered), else vfs (copies whole
/// layers: slower, works anywhere). `$ORIGINSTACK_BUILDAH_DRIVER` overrides.
fn storage_driver(storage: &Path) -> anyhow::Result<String> {
    if let Ok(driver) = std::env::var("ORIGINSTACK_BUILDAH_DRIVER") {
        return Ok(driver);
    }
    let remembered = storage.join("driver");
    if let Ok(driver) = fs::read_to_string(&remembered) {
        return Ok(driver.trim().to_string());
    }
    let probe = Buildah::create(storage, "overlay")?;
    let works = probe.from_image("scratch").and_then(|mut container| {
        container.mount()?;
        container.unmount()
    });
    probe.close()?;
    let driver = match works {
        Ok(()) => "overlay",
        Err(error) => {
            eprintln!("[images] overlay storage does not work here, using vfs: {error:#}");
            "vfs"
        }
    };
    fs::write(&remembered, driver)?;
    Ok(driver.to_string())
}

/// A buildah working container, removed (unmounted first) on drop unless committed.
pub struct WorkingContainer<'a> {
    buildah: &'a Buildah,
    pub id: String,
    mounted: Option<PathBuf>,
    gone: bool,
}

impl<'a> WorkingContainer<'a> {
    fn new(buildah: &'a Buildah, id: String) -> Self {
        Self {
            buildah,
            id: id.trim().to_string(),
            mounted: None,
            gone: false,
        }
    }

    /// Mounts the container's root filesystem; its path on this machine.
    pub fn mount(&mut self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.mounted {
            return Ok(path.clone());
        }
        let path = PathBuf::from(self.buildah.run(&["mount", &self.id])?.trim());
        self.mounted = Some(path.clone());
        Ok(path)
    }

    pub fn unmount(&mut self) -> anyhow::Result<()> {
        if self.mounted.take().is_some() {
            self.buildah.run(&["umount", &self.id])?;
        }
        Ok(())
    }

    /// `buildah config` of this container.
    pub fn config(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["config"];
        all.extend_from_slice(args);
        all.push(&self.id);
        self.buildah.run(&all).map(drop)
    }

    /// `buildah inspect` of this container, parsed.
    pub fn inspect(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.buildah.run(&[
            "inspect",
            "--type",
            "container",
            &self.id,
        ])?)?)
    }

    /// The image configuration the container would be committed with (`OCIv1.config`).
    pub fn image_config(&self) -> anyhow::Result<serde_json::Value> {
        Ok(self.inspect()?["OCIv1"]["config"].clone())
    }

    /// Runs `command` inside the container (chroot isolation, as the image's user); the
    /// output, whatever the exit status.
    pub fn run(&self, command: &[&str]) -> anyhow::Result<Output> {
        self.buildah
            .command()
            .args(["run", "--isolation", "chroot", &self.id, "--"])
            .args(command)
            .output()
            .context("running buildah run")
    }

    /// A file of the container's filesystem.
    pub fn read_file(&mut self, path: &str) -> anyhow::Result<Vec<u8>> {
        let root = self.mount()?;
        let read = fs::read(root.join(path.trim_start_matches('/')));
        self.unmount()?;
        read.with_context(|| format!("read {path} in container {}", self.id))
    }

    /// `buildah copy` of a file of this machine into the container.
    pub fn copy(&self, source: &Path, destination: &str) -> anyhow::Result<()> {
        self.buildah
            .run(&[
                OsStr::new("copy"),
                OsStr::new(&self.id),
                source.as_os_str(),
                OsStr::new(destination),
            ])
            .map(drop)
    }

    /// Commits the container as `name` (docker format, as the archives carry) and removes it.
    pub fn commit(mut self, name: &str) -> anyhow::Result<()> {
        self.unmount()?;
        self.gone = true;
        self.buildah
            .run(&[
                "commit", "--quiet", "--rm", "--format", "docker", &self.id, name,
            ])
            .map(drop)
    }
}

impl Drop for WorkingContainer<'_> {
    fn drop(&mut self) {
        let _ = self.unmount();
        if !self.gone {
            let _ = self.buildah.run(&["rm", &self.id]);
        }
    }
}

/// One `build_all`: a temporary storage (made when the first image must be built) and the
/// runtime base in it.
struct Session<'a> {
    cache: &'a Cache,
    buildah: Option<Buildah>,
    base: Base,
    base_built: Option<String>,
}

/// What goes into the runtime base.
struct Base {
    key: String,
    /// The libraries the release binaries link, the loader, the CA bundle.
    files: BTreeSet<PathBuf>,
}

impl<'a> Session<'a> {
    fn new(cache: &'a Cache) -> anyhow::Result<Self> {
        // Archives are written under the lock we hold: a partial one is from a process that
        // died.
        for entry in fs::read_dir(cache.archives())?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".partial") {
                let _ = fs::remove_file(entry.path());
            }
        }
        let proxy = release_binary(PROXY)?;
        let operator = release_binary(OPERATOR)?;
        let mut files = shared_libraries(&[&proxy, &operator])?;
        files.insert(PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
        let mut key = Key::new("runtime-base");
        for file in &files {
            key.file(file)?;
        }
        Ok(Self {
            cache,
            buildah: None,
            base: Base {
                key: key.finish(),
                files,
            },
            base_built: None,
        })
    }

    fn buildah(&mut self) -> anyhow::Result<&Buildah> {
        if self.buildah.is_none() {
            self.buildah = Some(Buildah::temporary()?);
        }
        Ok(self.buildah.as_ref().expect("just made"))
    }

    fn finish(mut self) -> anyhow::Result<()> {
        match self.buildah.take() {
            Some(buildah) => buildah.close(),
            None => Ok(()),
        }
    }

    /// The cached archive for `key`, or `build` (which leaves the image `name` in the storage)
    /// then `buildah push` to a new archive.
    fn image(
        &mut self,
        kind: &str,
        name: String,
        key: Key,
        build: impl FnOnce(&mut Self, &str) -> anyhow::Result<()>,
    ) -> anyhow::Result<BuiltImage> {
        let key = key.finish();
        let archive = self
            .cache
            .archives()
            .join(format!("{kind}-{}.tar", &key[..16]));
        if archive.is_file() {
            // Recently used archives are the ones pruning keeps.
            let _ = fs::File::options()
                .append(true)
                .open(&archive)
                .and_then(|file| file.set_modified(SystemTime::now()));
            eprintln!("[images] {kind} {name}: cached");
            return Ok(BuiltImage { name, archive });
        }
        let started = Instant::now();
        build(self, &name).with_context(|| format!("building the {kind} image {name}"))?;
        let partial = archive.with_extension(format!("tar.{}.partial", std::process::id()));
        let _ = fs::remove_file(&partial);
        let destination = format!("docker-archive:{}:{name}", partial.display());
        self.buildah()?
            .run(&["push", "--quiet", &name, &destination])
            .with_context(|| format!("saving {name}"))?;
        fs::rename(&partial, &archive)?;
        let size = fs::metadata(&archive)?.len();
        eprintln!(
            "[images] {kind} {name}: built in {:.1}s ({:.1} MB)",
            started.elapsed().as_secs_f64(),
            size as f64 / 1e6
        );
        prune_archives(&self.cache.archives(), kind);
        Ok(BuiltImage { name, archive })
    }

    /// The runtime base in the storage (built once per session); its name.
    fn base(&mut self) -> anyhow::Result<String> {
        if let Some(name) = &self.base_built {
            return Ok(name.clone());
        }
        let started = Instant::now();
        let name = format!("{TEST_REPOSITORY}/runtime-base:{}", &self.base.key[..16]);
        let files = self.base.files.clone();
        let buildah = self.buildah()?;
        let mut container = buildah.from_image("scratch")?;
        let root = container.mount()?;
        for file in &files {
            install(&root, file)?;
        }
        write_users(&root, &[], &[])?;
        // distroless's /etc/nsswitch.conf: without one glibc asks DNS before /etc/hosts.
        write(
            &root,
            "etc/nsswitch.conf",
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n\
             protocols: files\nservices: files\nethers: files\nrpc: files\n",
            0o644,
        )?;
        make_dir(&root, "tmp", 0o1777, 0)?;
        make_dir(&root, "root", 0o700, 0)?;
        make_dir(&root, "home/nonroot", 0o700, NONROOT_UID)?;
        container.unmount()?;
        // distroless's configuration (nonroot variant).
        container.config(&[
            "--user",
            &format!("{NONROOT_UID}:{NONROOT_UID}"),
            "--workingdir",
            "/home/nonroot",
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env",
            "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        ])?;
        container.commit(&name)?;
        eprintln!(
            "[images] runtime base: built in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        self.base_built = Some(name.clone());
        Ok(name)
    }

    /// The proxy or the operator from its own Dockerfile.
    fn product(&mut self, binary: &str, name: String) -> anyhow::Result<BuiltImage> {
        let crate_dir = binary.trim_start_matches("originstack-");
        let dockerfile = repo().join(crate_dir).join("Dockerfile");
        let release = release_binary(binary)?;
        let busybox = busybox()?;
        let mut key = Key::new(binary);
        key.text("name", &name);
        key.text("base", &self.base.key);
        key.file(&dockerfile)?;
        key.file(&release)?;
        key.file(&busybox)?;
        self.image(binary, name, key, |session, name| {
            let base = session.base()?;
            let builder = format!("{TEST_REPOSITORY}/{binary}-builder:{}", std::process::id());
            let buildah = session.buildah()?;
            let mut container = buildah.from_image("scratch")?;
            let root = container.mount()?;
            // What the Dockerfile's build stage runs: `/bin/sh -c 'if [ ! -x /out/... ]'`
            // (`[` is a builtin of busybox's sh).
            copy_file(&busybox, &root.join("bin/sh"), 0o755)?;
            copy_file(&release, &root.join("out").join(binary), 0o755)?;
            container.unmount()?;
            container.commit(&builder)?;
            let built = buildah.run(&[
                OsStr::new("build"),
                OsStr::new("--quiet"),
                OsStr::new("--isolation=chroot"),
                OsStr::new("--pull=never"),
                OsStr::new("--format=docker"),
                OsStr::new("--build-arg"),
                OsStr::new(&format!("BUILDER_IMAGE={builder}")),
                OsStr::new("--build-arg"),
                OsStr::new(&format!("RUNTIME_IMAGE={base}")),
                OsStr::new("--file"),
                dockerfile.as_os_str(),
                OsStr::new("--tag"),
                OsStr::new(name),
                repo().as_os_str(),
            ]);
            let _ = buildah.run(&["rmi", &builder]);
            built.map(drop)
        })
    }

    /// Debian's redis-server on the runtime base, run as the operator runs it:
    /// `redis-server --save '' ...` as uid 999, probed with `redis-cli ping`.
    fn redis(&mut self) -> anyhow::Result<BuiltImage> {
        let programs = [
            PathBuf::from("/usr/bin/redis-server"),
            PathBuf::from("/usr/bin/redis-cli"),
        ];
        for program in &programs {
            ensure!(
                program.exists(),
                "{} is missing: apt-get install redis-server (make deps)",
                program.display()
            );
        }
        let name = format!(
            "{TEST_REPOSITORY}/redis:{}",
            debian_version("redis-server")?
        );
        let mut files =
            shared_libraries(&programs.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
        files.extend(programs);
        let mut key = Key::new("redis");
        key.text("name", &name);
        key.text("base", &self.base.key);
        for file in &files {
            key.file(file)?;
        }
        self.image("redis", name, key, |session, name| {
            let base = session.base()?;
            let mut container = session.buildah()?.from_image(&base)?;
            let root = container.mount()?;
            for file in &files {
                install(&root, file)?;
            }
            write_users(
                &root,
                &[format!(
                    "redis:x:{REDIS_UID}:{REDIS_UID}:redis:/data:/sbin/nologin"
                )],
                &[format!("redis:x:{REDIS_UID}:")],
            )?;
            make_dir(&root, "data", 0o755, REDIS_UID)?;
            container.unmount()?;
            container.config(&[
                "--user",
                &format!("{REDIS_UID}:{REDIS_UID}"),
                "--env",
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "--workingdir",
                "/data",
                "--port",
                "6379/tcp",
                "--cmd",
                "[\"redis-server\"]",
            ])?;
            container.commit(name)
        })
    }

    /// The SRS stand-in where SRS's image keeps SRS, with the nginx-rtmp and ffmpeg it runs.
    fn origin(&mut self, binary: &Path) -> anyhow::Result<BuiltImage> {
        ensure!(binary.is_file(), "{} is missing", binary.display());
        let programs = [
            PathBuf::from("/usr/sbin/nginx"),
            PathBuf::from("/usr/lib/nginx/modules/ngx_rtmp_module.so"),
            PathBuf::from("/usr/bin/ffmpeg"),
        ];
        for program in &programs {
            ensure!(
                program.exists(),
                "{} is missing: apt-get install nginx libnginx-mod-rtmp ffmpeg (make deps)",
                program.display()
            );
        }
        let mut files = shared_libraries(
            &programs
                .iter()
                .map(PathBuf::as_path)
                .chain([binary])
                .collect::<Vec<_>>(),
        )?;
        files.extend(programs);
        let mut key = Key::new("origin");
        key.text("base", &self.base.key);
        key.file(binary)?;
        for file in &files {
            key.file(file)?;
        }
        let name = format!("{TEST_REPOSITORY}/srs-standin:{}", &key.peek()[..16]);
        self.image("origin", name, key, |session, name| {
            let base = session.base()?;
            let mut container = session.buildah()?.from_image(&base)?;
            let root = container.mount()?;
            for file in &files {
                install(&root, file)?;
            }
            copy_file(binary, &root.join("usr/local/srs/objs/srs"), 0o755)?;
            make_dir(&root, "usr/local/srs/conf", 0o755, 0)?;
            // The directories Debian's nginx package makes: its compiled-in defaults (access
            // and error logs, temp files) point there when a config does not say otherwise.
            for dir in ["var/log/nginx", "var/lib/nginx", "run"] {
                make_dir(&root, dir, 0o755, 0)?;
            }
            // nginx's master runs as root (as SRS's image does) and its workers as
            // nobody:nogroup, Debian's build default.
            write_users(&root, &[], &["nogroup:x:65534:".to_string()])?;
            container.unmount()?;
            let mut config = vec![
                "--user",
                "0:0",
                "--workingdir",
                "/usr/local/srs",
                "--cmd",
                "[\"./objs/srs\",\"-c\",\"conf/srs.conf\"]",
            ];
            let ports: Vec<String> = ORIGIN_PORTS
                .iter()
                .map(|port| format!("{port}/tcp"))
                .collect();
            for port in &ports {
                config.extend(["--port", port]);
            }
            container.config(&config)?;
            container.commit(name)
        })
    }

    /// Kubernetes' pause, compiled as its `build/pause/Makefile` does (static, stripped).
    fn pause(&mut self) -> anyhow::Result<BuiltImage> {
        let kubernetes = kubernetes_module()?;
        let source = kubernetes.join("build/pause/linux/pause.c");
        let makefile = fs::read_to_string(kubernetes.join("build/pause/Makefile"))?;
        let tag = makefile
            .lines()
            .find_map(|line| line.strip_prefix("TAG ?= "))
            .context("build/pause/Makefile has no TAG")?
            .trim();
        ensure!(
            PAUSE_IMAGE.ends_with(&format!(":{tag}")),
            "Kubernetes' pause is {tag} now: update images::PAUSE_IMAGE ({PAUSE_IMAGE})"
        );
        ensure_tool("gcc", "gcc")?;
        let gcc = Command::new("gcc").arg("--version").output()?;
        let libc = Command::new("gcc")
            .arg("-print-file-name=libc.a")
            .output()?;
        let libc = PathBuf::from(String::from_utf8_lossy(&libc.stdout).trim());
        ensure!(
            libc.is_absolute() && libc.is_file(),
            "no static libc (libc.a) for gcc -static: apt-get install libc6-dev"
        );
        let mut key = Key::new("pause");
        key.text("name", PAUSE_IMAGE);
        key.text("gcc", &String::from_utf8_lossy(&gcc.stdout));
        key.file(&source)?;
        key.file(&libc)?;
        let version = format!(
            "v{tag}-{}",
            kubernetes
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.split_once('@'))
                .map_or("unknown", |(_, version)| version)
        );
        self.image("pause", PAUSE_IMAGE.to_string(), key, |session, name| {
            let build = tempfile::tempdir()?;
            let binary = build.path().join("pause");
            let output = Command::new("gcc")
                .args(["-Os", "-Wall", "-Werror", "-static", "-s"])
                .arg(format!("-DVERSION={version}"))
                .arg("-o")
                .arg(&binary)
                .arg(&source)
                .output()?;
            checked("gcc", &["pause.c"], output)?;
            let mut container = session.buildah()?.from_image("scratch")?;
            let root = container.mount()?;
            copy_file(&binary, &root.join("pause"), 0o755)?;
            container.unmount()?;
            // As Kubernetes' build/pause/Dockerfile.
            container.config(&["--user", "65535:65535", "--entrypoint", "[\"/pause\"]"])?;
            container.commit(name)
        })
    }
}

/// Deletes all but the [`KEEP_ARCHIVES`] newest archives of `kind`.
fn prune_archives(dir: &Path, kind: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{kind}-");
    let mut archives: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_prefix(&prefix)
                .is_some_and(|rest| rest.len() == 20 && rest.ends_with(".tar"))
        })
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .collect();
    archives.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in archives.into_iter().skip(KEEP_ARCHIVES) {
        let _ = fs::remove_file(path);
    }
}

/// The directory of the Kubernetes module pinned in tests/k8s-assets/kube (in Go's module
/// cache, where `make deps` put it).
fn kubernetes_module() -> anyhow::Result<PathBuf> {
    let assets = repo().join("tests/k8s-assets/kube");
    let go_mod = fs::read_to_string(assets.join("go.mod"))?;
    let version = go_mod
        .lines()
        .find_map(|line| line.trim().strip_prefix("require k8s.io/kubernetes "))
        .context("tests/k8s-assets/kube/go.mod does not require k8s.io/kubernetes")?
        .trim();
    ensure_tool("go", "golang (or Go from go.dev)")?;
    let output = Command::new("go")
        .args(["mod", "download", "-json"])
        .arg(format!("k8s.io/kubernetes@{version}"))
        .current_dir(&assets)
        .output()
        .context("running go mod download")?;
    let json = checked("go", &["mod", "download", "-json"], output)?;
    let dir: serde_json::Value = serde_json::from_str(&json)?;
    let dir = PathBuf::from(dir["Dir"].as_str().context("no Dir from go mod download")?);
    ensure!(dir.is_dir(), "{} is missing", dir.display());
    Ok(dir)
}

/// The version of a Debian package, as an image tag (no epoch; `~`, `+`, `:` become `-`).
fn debian_version(package: &str) -> anyhow::Result<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .context("running dpkg-query")?;
    let version = checked("dpkg-query", &[package], output)?;
    let version = version.split_once(':').map_or(version.as_str(), |(_, v)| v);
    Ok(version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect())
}

/// busybox-static's busybox: the builder images' only shell.
fn busybox() -> anyhow::Result<PathBuf> {
    let path = PathBuf::from("/bin/busybox");
    ensure!(
        path.is_file(),
        "/bin/busybox is missing: apt-get install busybox-static"
    );
    let ldd = Command::new("ldd").arg(&path).output()?;
    ensure!(
        !ldd.status.success(),
        "/bin/busybox is linked dynamically: apt-get install busybox-static"
    );
    Ok(path)
}

/// The shared libraries `binaries` load (their whole closure, from ldd) and the loader, as
/// the paths ldd names (symlinks are kept as such by [`install`]).
fn shared_libraries(binaries: &[&Path]) -> anyhow::Result<BTreeSet<PathBuf>> {
    let mut libraries = BTreeSet::new();
    for binary in binaries {
        let output = Command::new("ldd").arg(binary).output()?;
        let text = checked("ldd", &[binary], output)?;
        for line in text.lines() {
            let line = line.trim();
            ensure!(!line.contains("not found"), "{}: {line}", binary.display());
            let path = match line.split_once(" => ") {
                Some((_, rest)) => rest.split(' ').next().unwrap_or(""),
                None => line.split(' ').next().unwrap_or(""),
            };
            // linux-vdso.so.1 is the kernel's, with no file.
            if path.starts_with('/') {
                libraries.insert(PathBuf::from(path));
            }
        }
    }
    Ok(libraries)
}

/// Puts the host's `path` at the same place under `root`, following it component by
/// component: every symlink on the way (`/lib` -> `usr/lib`, `libfoo.so.1` ->
/// `libfoo.so.1.2`) is made again as a symlink, directories keep their modes, the file is
/// copied. What already exists under `root` (the base's files) stays.
fn install(root: &Path, path: &Path) -> anyhow::Result<()> {
    ensure!(path.is_absolute(), "{} is not absolute", path.display());
    let mut pending: Vec<std::ffi::OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut resolved = PathBuf::from("/");
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let host = resolved.join(&part);
        let inside = root.join(host.strip_prefix("/").expect("absolute"));
        let meta =
            fs::symlink_metadata(&host).with_context(|| format!("stat {}", host.display()))?;
        if meta.file_type().is_symlink() {
            links += 1;
            ensure!(links < 40, "too many symlinks in {}", path.display());
            let target = fs::read_link(&host)?;
            if fs::symlink_metadata(&inside).is_err() {
                symlink(&target, &inside)
                    .with_context(|| format!("symlink {}", inside.display()))?;
            }
            if target.is_absolute() {
                resolved = PathBuf::from("/");
            }
            push_components(&mut pending, &target);
        } else if meta.is_dir() {
            if fs::symlink_metadata(&inside).is_err() {
                fs::create_dir(&inside)?;
                fs::set_permissions(&inside, meta.permissions())?;
            }
            resolved = host;
        } else {
            ensure!(pending.is_empty(), "{} is not a directory", host.display());
            if fs::symlink_metadata(&inside).is_err() {
                copy_file(&host, &inside, meta.permissions().mode() & 0o7777)?;
            }
            return Ok(());
        }
    }
    Ok(())
}

/// Pushes `path`'s components so that the first is popped first (`.` dropped, `..` kept).
fn push_components(stack: &mut Vec<std::ffi::OsString>, path: &Path) {
    let parts: Vec<_> = path
        .components()
        .filter_map(|component| match component {
            Component::Normal(part) => Some(part.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    stack.extend(parts.into_iter().rev());
}

fn copy_file(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(from, to).with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn write(root: &Path, path: &str, contents: &str, mode: u32) -> anyhow::Result<()> {
    let path = root.join(path);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn make_dir(root: &Path, path: &str, mode: u32, owner: u32) -> anyhow::Result<()> {
    let path = root.join(path);
    fs::create_dir_all(&path)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::chown(&path, Some(owner), Some(owner))
        .with_context(|| format!("chown {}", path.display()))?;
    Ok(())
}

/// distroless's `/etc/passwd` and `/etc/group` (root, nobody, nonroot) plus `users`/`groups`.
fn write_users(root: &Path, users: &[String], groups: &[String]) -> anyhow::Result<()> {
    let mut passwd = vec![
        "root:x:0:0:root:/root:/sbin/nologin".to_string(),
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin".into(),
        format!("nonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin"),
    ];
    passwd.extend_from_slice(users);
    let mut group = vec![
        "root:x:0:".to_string(),
        "nobody:x:65534:".into(),
        "tty:x:5:".into(),
        "staff:x:50:".into(),
        format!("nonroot:x:{NONROOT_UID}:"),
    ];
    group.extend_from_slice(groups);
    write(root, "etc/passwd", &(passwd.join("\n") + "\n"), 0o644)?;
    write(root, "etc/group", &(group.join("\n") + "\n"), 0o644)
}

/// A cache key: SHA-256 over this file's text and each input (labels, paths, modes, bytes).
struct Key(Sha256);

impl Key {
    fn new(kind: &str) -> Self {
        let mut key = Self(Sha256::new());
        key.text("recipe", RECIPE);
        key.text("kind", kind);
        key
    }

    fn text(&mut self, label: &str, value: &str) {
        for part in [label.as_bytes(), value.as_bytes()] {
            self.0.update((part.len() as u64).to_le_bytes());
            self.0.update(part);
        }
    }

    /// A file by its path, mode and contents (through symlinks: `install` copies those too).
    fn file(&mut self, path: &Path) -> anyhow::Result<()> {
        let mut file = fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mode = file.metadata()?.permissions().mode();
        self.text("file", &format!("{} {mode:o}", path.display()));
        let mut buffer = vec![0; 1 << 20];
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            self.0.update(&buffer[..read]);
        }
        self.0.update(b"\0end");
        Ok(())
    }

    fn peek(&self) -> String {
        hex(&self.0.clone().finalize())
    }

    fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn ensure_tool(program: &str, package: &str) -> anyhow::Result<()> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    ensure!(found, "{program} is not on PATH: apt-get install {package}");
    Ok(())
}

/// `output`'s stdout when it succeeded, else an error with both streams.
fn checked<S: AsRef<OsStr>>(program: &str, args: &[S], output: Output) -> anyhow::Result<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let args: Vec<_> = args
            .iter()
            .map(|arg| arg.as_ref().to_string_lossy().into_owned())
            .collect();
        bail!(
            "{program} {} failed ({}):\n{stdout}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}
