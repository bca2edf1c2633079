#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine; quick when all is present.
# It leaves no service running: every test starts its own peers on free loopback ports.
set -euo pipefail

log() { printf '[deps] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: real peers for the tests, what the builds need, the font of the
# benchmark chart (bench/report.png), and the one-node Kubernetes of the cluster tests: its
# container runtime (containerd, runc), pod network (CNI plugins, iptables, conntrack for
# kube-proxy) and local image builds (buildah; busybox-static is the shell of the test
# builder image; gcc and libc6-dev compile the pause image).
packages=(redis-server ffmpeg nginx-light libnginx-mod-rtmp srt-tools curl openssl pkg-config fonts-dejavu-core
  containerd runc containernetworking-plugins iptables conntrack buildah busybox-static gcc libc6-dev)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  # policy-rc.d keeps the packages' own services from starting during the install.
  printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
  as_root chmod +x /usr/sbin/policy-rc.d
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  as_root rm -f /usr/sbin/policy-rc.d
fi
# Stop services that an earlier install may have started; tests run their own.
for svc in redis-server nginx containerd; do
  if command -v service >/dev/null && service "$svc" status >/dev/null 2>&1; then
    as_root service "$svc" stop >/dev/null 2>&1 || true
  fi
done

# Rust components used by make lint, and nightly + cargo-fuzz for the fuzz targets.
if command -v rustup >/dev/null; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
  if ! rustup toolchain list | grep -q '^nightly'; then
    log "installing the nightly toolchain (cargo-fuzz needs it)"
    rustup toolchain install nightly --profile minimal
  fi
fi
if ! command -v cargo-fuzz >/dev/null; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Kubernetes binaries (control plane, kubelet, kube-proxy, kubectl), CoreDNS, Helm and promtool,
# built from their Go modules, and prometheus-operator's ServiceMonitor and PrometheusRule CRDs,
# all cached (slow only once).
if [ -x tests/k8s-assets/build.sh ]; then
  tests/k8s-assets/build.sh >/dev/null
fi

log "all dependencies present"
