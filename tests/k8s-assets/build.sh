#!/usr/bin/env bash
# Build (once) and cache the Kubernetes test binaries used by the Rust
# integration tests, each compiled from the Go modules pinned in this directory
# (kube/, etcd/, helm/, coredns/, prometheus/: go.mod + go.sum): kube-apiserver
# and etcd for the API-only tests; kubelet, kube-controller-manager,
# kube-scheduler, kube-proxy, kubectl and coredns for the one-node cluster; helm;
# promtool for checking and unit-testing the chart's alert rules; and
# prometheus-operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs, taken
# from the Go module pinned in prometheus-operator/ (nothing compiled), for
# validating the chart and the PodMonitors the operator creates.
#
# Usage: tests/k8s-assets/build.sh [--print-path]
#
#   Binaries land in ${ORIGINSTACK_CACHE:-$HOME/.cache/originstack}/k8s-<kube version>/.
#   If all of them are already there and report the pinned versions, this exits
#   immediately without invoking Go. Otherwise only the missing/stale ones are
#   built (needs Go and a module proxy; a cold build takes several minutes).
#
#   --print-path   print only the cache directory on stdout (after building
#                  if needed). All progress messages go to stderr.
#
# Environment:
#   ORIGINSTACK_CACHE      cache root (default: $HOME/.cache/originstack)
#   ORIGINSTACK_GO_JOBS    go build -p value (default: 2)
#   GOPROXY, GOCACHE, GOMODCACHE, ... are honoured as usual.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

print_path=0
for arg in "$@"; do
    case "$arg" in
        --print-path) print_path=1 ;;
        -h|--help) sed -n '2,/^set /{/^#/p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "k8s-assets: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

log() { echo "k8s-assets: $*" >&2; }

# Version of module $2 required by the go.mod in directory $1 (handles both
# `require path vX` and lines inside a `require ( ... )` block).
modver() {
    awk -v m="$2" '
        $1 == "require" && $2 == m { print $3; exit }
        $1 == m && $2 ~ /^v[0-9]/  { print $2; exit }
    ' "$here/$1/go.mod"
}

KUBE_VERSION="$(modver kube k8s.io/kubernetes)"        # e.g. v1.34.12
ETCD_VERSION="$(modver etcd go.etcd.io/etcd/server/v3)" # e.g. v3.6.5
HELM_VERSION="$(modver helm helm.sh/helm/v3)"          # e.g. v3.22.0
COREDNS_VERSION="$(modver coredns github.com/coredns/coredns)" # e.g. v1.12.4
PROMOP_MODULE=github.com/prometheus-operator/prometheus-operator
PROMOP_VERSION="$(modver prometheus-operator "$PROMOP_MODULE")" # e.g. v0.85.0
PROMETHEUS_MODULE=github.com/prometheus/prometheus
PROMETHEUS_VERSION="$(modver prometheus "$PROMETHEUS_MODULE")" # e.g. v0.316.0
for v in KUBE_VERSION ETCD_VERSION HELM_VERSION COREDNS_VERSION PROMOP_VERSION PROMETHEUS_VERSION; do
    [[ -n "${!v}" ]] || { log "could not read $v from go.mod"; exit 1; }
done
# Prometheus 3.x is published as Go module v0.3MM.P for release 3.MM.P (the
# module's VERSION file says so; checked when building).
if [[ ! "$PROMETHEUS_VERSION" =~ ^v0\.([1-9])([0-9][0-9])\.([0-9]+)$ ]]; then
    log "cannot map $PROMETHEUS_MODULE $PROMETHEUS_VERSION to a Prometheus release"; exit 1
fi
PROMTOOL_VERSION="${BASH_REMATCH[1]}.$((10#${BASH_REMATCH[2]})).${BASH_REMATCH[3]}" # e.g. 3.16.0

cache_root="${ORIGINSTACK_CACHE:-${HOME:?HOME is not set}/.cache/originstack}"
dir="$cache_root/k8s-$KUBE_VERSION"

# --- fast path: is binary $1 present and at the pinned version? ------------
version_ok() {
    local out
    case "$1" in
        kube-apiserver|kubelet|kube-controller-manager|kube-scheduler|kube-proxy)
            out="$("$dir/$1" --version 2>/dev/null)" || return 1
            [[ "$out" == "Kubernetes $KUBE_VERSION" ]] ;;
        kubectl)
            out="$("$dir/kubectl" version --client 2>/dev/null)" || return 1
            [[ "${out%%$'\n'*}" == "Client Version: $KUBE_VERSION" ]] ;;
        coredns)
            out="$("$dir/coredns" -version 2>/dev/null)" || return 1
            [[ "${out%%$'\n'*}" == "CoreDNS-${COREDNS_VERSION#v}" ]] ;;
        etcd)
            out="$("$dir/etcd" --version 2>/dev/null)" || return 1
            [[ "${out%%$'\n'*}" == "etcd Version: ${ETCD_VERSION#v}" ]] ;;
        helm)
            out="$("$dir/helm" version --template '{{.Version}}' 2>/dev/null)" || return 1
            [[ "$out" == "$HELM_VERSION" ]] ;;
        promtool)
            out="$("$dir/promtool" --version 2>&1)" || return 1
            [[ "${out%%$'\n'*}" == "promtool, version $PROMTOOL_VERSION "* ]] ;;
        servicemonitor-crd|podmonitor-crd|prometheusrule-crd)
            [[ -f "$(asset_path "$1")" ]] || return 1
            [[ "$(cat "$dir/crds/.prometheus-operator-version" 2>/dev/null)" == "$PROMOP_VERSION" ]] ;;
    esac
}

# Path of asset $1 in the cache.
asset_path() {
    case "$1" in
        servicemonitor-crd) echo "$dir/crds/monitoring.coreos.com_servicemonitors.yaml" ;;
        podmonitor-crd) echo "$dir/crds/monitoring.coreos.com_podmonitors.yaml" ;;
        prometheusrule-crd) echo "$dir/crds/monitoring.coreos.com_prometheusrules.yaml" ;;
        *) echo "$dir/$1" ;;
    esac
}

ASSETS="kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy kubectl etcd helm coredns promtool servicemonitor-crd podmonitor-crd prometheusrule-crd"

# Names of the binaries that are absent or stale (checks run in parallel).
missing() {
    local b m=() pids=()
    for b in $ASSETS; do
        { [[ -e "$(asset_path "$b")" ]] && version_ok "$b"; } &
        pids+=($!)
    done
    local i=0
    for b in $ASSETS; do
        wait "${pids[$i]}" || m+=("$b")
        i=$((i + 1))
    done
    echo "${m[@]:-}"
}

todo="$(missing)"
if [[ -z "$todo" ]]; then
    if [[ $print_path == 1 ]]; then echo "$dir"; fi
    exit 0
fi

# --- slow path: build what is missing ---------------------------------------
command -v go >/dev/null || { log "go is not installed (needed to build: $todo)"; exit 1; }
mkdir -p "$dir"

# Serialise concurrent invocations (e.g. parallel test binaries), then re-check.
if command -v flock >/dev/null; then
    exec 9>"$dir/.build.lock"
    if ! flock -n 9; then
        log "another build is running; waiting for $dir/.build.lock"
        flock 9
    fi
    todo="$(missing)"
fi

export CGO_ENABLED=0
# Use the committed go.sum as is (never -mod=mod); no VCS stamping.
export GOFLAGS="-buildvcs=false -mod=readonly"
export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
jobs="${ORIGINSTACK_GO_JOBS:-2}"

tmp=""
cleanup() { if [[ -n "$tmp" ]]; then rm -f "$tmp"; fi; }
trap cleanup EXIT

# build <name> <module dir> <main package> <ldflags>
build() {
    local name="$1" mod="$2" pkg="$3" ldflags="$4" start=$SECONDS
    tmp="$dir/.$name.tmp.$$"
    log "building $name from $pkg ($mod/go.mod) -> $dir/$name"
    (cd "$here/$mod" && go build -p "$jobs" -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg") >&2
    mv -f "$tmp" "$dir/$name"
    tmp=""
    if ! version_ok "$name"; then
        log "built $name but its version check failed"
        exit 1
    fi
    log "built $name in $((SECONDS - start))s"
}

# Directory of module $2 as pinned (and go.sum-verified) by the go.mod in $1.
moddir() {
    (cd "$here/$1" && go mod download -json "$2") | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

crds_done=0
total_start=$SECONDS
for b in $todo; do
    case "$b" in
        kube-apiserver|kubelet|kube-controller-manager|kube-scheduler|kube-proxy|kubectl)
            minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
            ld="-s -w"
            for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
                ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
            done
            build "$b" kube "k8s.io/kubernetes/cmd/$b" "$ld" ;;
        coredns)
            build coredns coredns github.com/coredns/coredns "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" ;;
        etcd)
            build etcd etcd go.etcd.io/etcd/server/v3 "-s -w" ;;
        helm)
            hminor="$(modver helm k8s.io/client-go)"; hminor="${hminor#v0.}"; hminor="${hminor%%.*}"
            ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
            ld+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$hminor"
            ld+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$hminor"
            build helm helm helm.sh/helm/v3/cmd/helm "$ld" ;;
        promtool)
            # -X the release version (the module's VERSION file, e.g. 3.16.0 for
            # v0.316.0) the way Prometheus's .promu.yml does, so --version shows it.
            pdir="$(moddir prometheus "$PROMETHEUS_MODULE")"
            [[ -n "$pdir" ]] || { log "go mod download $PROMETHEUS_MODULE failed"; exit 1; }
            release="$(cat "$pdir/VERSION")"
            if [[ "$release" != "$PROMTOOL_VERSION" ]]; then
                log "$PROMETHEUS_MODULE $PROMETHEUS_VERSION has VERSION $release, expected $PROMTOOL_VERSION"; exit 1
            fi
            pv=github.com/prometheus/common/version
            ld="-s -w -X $pv.Version=$release -X $pv.Revision=$PROMETHEUS_VERSION -X $pv.Branch=HEAD"
            ld+=" -X $pv.BuildUser=originstack-k8s-assets"
            build promtool prometheus "$PROMETHEUS_MODULE/cmd/promtool" "$ld" ;;
        servicemonitor-crd|podmonitor-crd|prometheusrule-crd)
            # The CRDs come from the same module and share one version marker,
            # so they are always (re)copied together.
            [[ $crds_done == 0 ]] || continue
            crds_done=1
            log "fetching $PROMOP_MODULE@$PROMOP_VERSION (go.sum-verified) for its ServiceMonitor, PodMonitor and PrometheusRule CRDs"
            pdir="$(moddir prometheus-operator "$PROMOP_MODULE")"
            [[ -n "$pdir" ]] || { log "go mod download $PROMOP_MODULE failed"; exit 1; }
            mkdir -p "$dir/crds"
            rm -f "$dir/crds/.prometheus-operator-version"
            for crd in servicemonitor-crd podmonitor-crd prometheusrule-crd; do
                dest="$(asset_path "$crd")"
                cp "$pdir/example/prometheus-operator-crd/${dest##*/}" "$dir/crds/.${crd}.tmp.$$"
                mv -f "$dir/crds/.${crd}.tmp.$$" "$dest"
            done
            echo "$PROMOP_VERSION" >"$dir/crds/.prometheus-operator-version" ;;
    esac
done
if [[ -n "$todo" ]]; then log "done in $((SECONDS - total_start))s: $dir"; fi

cat >"$dir/.versions.tmp.$$" <<EOF
KUBE_VERSION=$KUBE_VERSION
ETCD_VERSION=$ETCD_VERSION
HELM_VERSION=$HELM_VERSION
COREDNS_VERSION=$COREDNS_VERSION
PROMOP_VERSION=$PROMOP_VERSION
PROMETHEUS_VERSION=$PROMETHEUS_VERSION
PROMTOOL_VERSION=$PROMTOOL_VERSION
EOF
mv -f "$dir/.versions.tmp.$$" "$dir/VERSIONS"

if [[ $print_path == 1 ]]; then echo "$dir"; fi
exit 0
