#!/usr/bin/env bash
# A real one-node Kubernetes for the tests and for trying the operator without a cloud:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (CRI, runc,
# bridge CNI with host-local IPAM), kubelet, kube-proxy (iptables) and CoreDNS, all run as
# root from one private directory. Nothing is pulled: the pause image and every workload
# image are imported into containerd from local archives.
#
# Usage (as root):
#   tests/cluster/cluster.sh up DIR     start everything, wait for a Ready node; prints DIR/env
#   tests/cluster/cluster.sh down DIR   stop everything and remove what it left on the machine
#                                       (processes, mounts, network namespaces, the bridge,
#                                       iptables rules and chains, cgroups, sysctls), then DIR
#   tests/cluster/cluster.sh watch DIR  run `down DIR` once stdin closes (a test's lifeline)
#
# Environment:
#   ORIGINSTACK_K8S_ASSETS   directory of the Kubernetes binaries (default: tests/k8s-assets/build.sh)
#   CLUSTER_NODE_IP          the node's address (default: the first global IPv4 address); not
#                            loopback, since pods reach the API server and DNS on it
#   CLUSTER_PAUSE_ARCHIVE    docker-archive of the sandbox image to import before the kubelet starts
#   CLUSTER_PAUSE_IMAGE      its name (default registry.k8s.io/pause:3.10.1)
#
# Only one cluster runs on a machine at a time (it owns the kubelet's cgroups and the node's
# iptables chains): /run/originstack-cluster.lock names the directory of the one that is up.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

NODE_NAME=originstack-node
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
BRIDGE=originstack0
LOCK=/run/originstack-cluster.lock
# Host settings the components change; `down` puts back what `up` found.
SYSCTLS=(
    net/ipv4/ip_forward
    net/bridge/bridge-nf-call-iptables
    net/bridge/bridge-nf-call-ip6tables
    vm/overcommit_memory
    vm/panic_on_oom
    kernel/panic
    kernel/panic_on_oops
    kernel/keys/root_maxkeys
    kernel/keys/root_maxbytes
)
CGROUP_ROOT=/sys/fs/cgroup

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

node_ip() {
    if [[ -n "${CLUSTER_NODE_IP:-}" ]]; then echo "$CLUSTER_NODE_IP"; return; fi
    ip -4 -o addr show scope global | awk '{ split($4, a, "/"); print a[1]; exit }'
}

assets() {
    if [[ -n "${ORIGINSTACK_K8S_ASSETS:-}" ]]; then echo "$ORIGINSTACK_K8S_ASSETS"; return; fi
    "$here/../k8s-assets/build.sh" --print-path
}

# start NAME BINARY ARGS...: runs a component in its own session, logging to DIR/logs/NAME.log.
start() {
    local name="$1"; shift
    setsid "$@" >>"$DIR/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$DIR/pids/$name"
}

running() { [[ -f "$DIR/pids/$1" ]] && kill -0 "$(cat "$DIR/pids/$1")" 2>/dev/null; }

# wait_for WHAT SECONDS COMMAND...: polls COMMAND until it succeeds; on timeout shows the logs.
wait_for() {
    local what="$1" seconds="$2"; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "timed out after ${seconds}s waiting for $what"
            for f in "$DIR"/logs/*.log; do log "--- $(basename "$f")"; tail -n 15 "$f" >&2 || true; done
            return 1
        fi
        sleep 0.5
    done
}

kubeconfig() { # kubeconfig FILE USER TOKEN
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: originstack
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority: $DIR/pki/ca.crt
users:
- name: $2
  user:
    token: $3
contexts:
- name: originstack
  context: {cluster: originstack, user: $2}
current-context: originstack
EOF
}

pki() {
    local p="$DIR/pki"
    mkdir -p "$p"
    openssl genrsa -out "$p/ca.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$p/ca.key" -days 7 -subj "/CN=originstack-test-ca" -out "$p/ca.crt" 2>/dev/null
    # sign NAME SUBJECT [SANS]
    sign() {
        openssl genrsa -out "$p/$1.key" 2048 2>/dev/null
        openssl req -new -key "$p/$1.key" -subj "$2" -out "$p/$1.csr" 2>/dev/null
        printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n%s\n' \
            "${3:-}" >"$p/$1.ext"
        openssl x509 -req -in "$p/$1.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
            -days 7 -out "$p/$1.crt" -extfile "$p/$1.ext" 2>/dev/null
    }
    sign apiserver "/CN=kube-apiserver" \
        "subjectAltName=IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
    # The API server's identity towards the kubelet (logs, exec, port-forward).
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    sign kubelet "/CN=$NODE_NAME" "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"
    openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
    openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
    # Bearer tokens for every client: one file, no certificate per component.
    local t
    : >"$p/tokens.csv"
    for who in admin kubelet controller-manager scheduler kube-proxy coredns; do
        t="$(openssl rand -hex 24)"
        echo "$t" >"$p/$who.token"
    done
    {
        echo "$(cat "$p/admin.token"),admin,admin,\"system:masters\""
        echo "$(cat "$p/kubelet.token"),system:node:$NODE_NAME,kubelet,\"system:nodes\""
        echo "$(cat "$p/controller-manager.token"),system:kube-controller-manager,kube-controller-manager"
        echo "$(cat "$p/scheduler.token"),system:kube-scheduler,kube-scheduler"
        echo "$(cat "$p/kube-proxy.token"),system:kube-proxy,kube-proxy"
        echo "$(cat "$p/coredns.token"),system:coredns,coredns"
    } >"$p/tokens.csv"
    kubeconfig "$DIR/admin.kubeconfig" admin "$(cat "$p/admin.token")"
    for who in kubelet controller-manager scheduler kube-proxy coredns; do
        kubeconfig "$DIR/$who.kubeconfig" "$who" "$(cat "$p/$who.token")"
    done
}

save_host_state() {
    local s
    mkdir -p "$DIR/host"
    for s in "${SYSCTLS[@]}"; do
        if [[ -e /proc/sys/$s ]]; then cat "/proc/sys/$s" >"$DIR/host/${s//\//.}"; fi
    done
}

up() {
    [[ "$(id -u)" == 0 ]] || die "must run as root (kubelet, containerd, iptables)"
    mkdir -p "$DIR"/{logs,pids,etc,cni/net.d,containerd,kubelet}
    DIR="$(cd "$DIR" && pwd)"
    exec 8>>"$LOCK"
    flock 8
    local holder
    holder="$(cat "$LOCK")"
    if [[ -n "$holder" && "$holder" != "$DIR" && -d "$holder" ]]; then
        die "the cluster in $holder is still up: run \`$0 down $holder\` first"
    fi
    echo "$DIR" >"$LOCK"
    exec 8>&-
    ASSETS="$(assets)"
    NODE_IP="$(node_ip)"
    [[ -n "$NODE_IP" ]] || die "no global IPv4 address for the node (set CLUSTER_NODE_IP)"
    API_PORT="$(free_port)"
    ETCD_PORT="$(free_port)"
    ETCD_PEER_PORT="$(free_port)"
    KUBELET_PORT=10250
    for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl coredns; do
        [[ -x "$ASSETS/$b" ]] || die "$ASSETS/$b is missing: run \`make deps\`"
    done
    for b in containerd containerd-shim-runc-v2 runc ctr iptables; do
        command -v "$b" >/dev/null || die "$b is not installed: run \`make deps\`"
    done
    [[ -x /usr/lib/cni/bridge ]] || die "CNI plugins missing (/usr/lib/cni): run \`make deps\`"
    save_host_state
    cat >"$DIR/state" <<EOF
NODE_IP=$NODE_IP
API_PORT=$API_PORT
ASSETS=$ASSETS
EOF
    log "node $NODE_NAME at $NODE_IP, API server on port $API_PORT, directory $DIR"
    pki

    # --- control plane ---------------------------------------------------------------
    start etcd "$ASSETS/etcd" --name=node --data-dir="$DIR/etcd" \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="node=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync=true --log-level=warn
    start kube-apiserver "$ASSETS/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
        --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" \
        --tls-cert-file="$DIR/pki/apiserver.crt" --tls-private-key-file="$DIR/pki/apiserver.key" \
        --client-ca-file="$DIR/pki/ca.crt" --token-auth-file="$DIR/pki/tokens.csv" \
        --kubelet-client-certificate="$DIR/pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$DIR/pki/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority="$DIR/pki/ca.crt" \
        --kubelet-preferred-address-types=InternalIP \
        --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
        --service-account-issuer="https://kubernetes.default.svc.cluster.local" \
        --service-account-key-file="$DIR/pki/sa.pub" --service-account-signing-key-file="$DIR/pki/sa.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true --profiling=false
    wait_for "the API server" 90 "$ASSETS/kubectl" --kubeconfig="$DIR/admin.kubeconfig" get --raw=/readyz
    start kube-controller-manager "$ASSETS/kube-controller-manager" \
        --kubeconfig="$DIR/controller-manager.kubeconfig" \
        --authentication-kubeconfig="$DIR/controller-manager.kubeconfig" \
        --authorization-kubeconfig="$DIR/controller-manager.kubeconfig" \
        --service-account-private-key-file="$DIR/pki/sa.key" --root-ca-file="$DIR/pki/ca.crt" \
        --use-service-account-credentials=true --leader-elect=false \
        --bind-address=127.0.0.1 --secure-port="$(free_port)" \
        --cluster-name=originstack --profiling=false \
        --controllers='*,-bootstrapsigner,-tokencleaner,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller'
    start kube-scheduler "$ASSETS/kube-scheduler" \
        --kubeconfig="$DIR/scheduler.kubeconfig" \
        --authentication-kubeconfig="$DIR/scheduler.kubeconfig" \
        --authorization-kubeconfig="$DIR/scheduler.kubeconfig" \
        --leader-elect=false --bind-address=127.0.0.1 --secure-port="$(free_port)" --profiling=false

    # --- the node: containerd with the CRI plugin and a bridge network -----------------
    cat >"$DIR/cni/net.d/10-originstack.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "originstack",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$POD_CIDR" }]],
                "routes": [{ "dst": "0.0.0.0/0" }], "dataDir": "$DIR/cni/ipam" }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
    cat >"$DIR/etc/containerd.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$DIR/containerd.sock"
[ttrpc]
  address = "$DIR/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${CLUSTER_PAUSE_IMAGE:-registry.k8s.io/pause:3.10.1}"
  # The machine withholds CAP_SYS_RESOURCE: runc cannot set the negative oom_score_adj the
  # kubelet asks for, so containerd keeps it at or above its own.
  restrict_oom_score_adj = true
  # Network namespaces under the state directory rather than /var/run/netns: ours alone.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
EOF
    # Service traffic between two pods on one bridge must pass iptables to be un-DNATed.
    echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
    echo 1 >/proc/sys/net/ipv4/ip_forward
    start containerd containerd --config "$DIR/etc/containerd.toml"
    wait_for containerd 30 ctr --address "$DIR/containerd.sock" version
    if [[ -n "${CLUSTER_PAUSE_ARCHIVE:-}" ]]; then
        ctr --address "$DIR/containerd.sock" -n k8s.io images import "$CLUSTER_PAUSE_ARCHIVE" >/dev/null
    fi

    cat >"$DIR/etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(free_port)
containerRuntimeEndpoint: unix://$DIR/containerd.sock
# cgroup v1 with cgroupfs here; no systemd manages this machine's cgroups.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $DIR/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $DIR/pki/kubelet.crt
tlsPrivateKeyFile: $DIR/pki/kubelet.key
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
resolvConf: $DIR/etc/resolv.conf
# Images are imported, never pulled; they must not be collected either.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
maxPods: 60
EOF
    # Pods resolve only the cluster's names: this machine has no other DNS worth inheriting.
    : >"$DIR/etc/resolv.conf"
    start kubelet "$ASSETS/kubelet" --config="$DIR/etc/kubelet.yaml" \
        --kubeconfig="$DIR/kubelet.kubeconfig" --root-dir="$DIR/kubelet" \
        --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
    wait_for "the node to register" 60 "$ASSETS/kubectl" --kubeconfig="$DIR/admin.kubeconfig" get node "$NODE_NAME"

    cat >"$DIR/etc/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$(free_port)
metricsBindAddress: 127.0.0.1:$(free_port)
# NodePorts on the node's address only: loopback stays as the other tests expect it.
nodePortAddresses: [$NODE_IP/32]
iptables: {localhostNodePorts: false}
# Leave the machine's conntrack settings alone (0 = do not change).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
    start kube-proxy "$ASSETS/kube-proxy" --config="$DIR/etc/kube-proxy.yaml"

    # --- cluster DNS: CoreDNS on the node's address, read-only over the API ---------------
    "$ASSETS/kubectl" --kubeconfig="$DIR/admin.kubeconfig" apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}
EOF
    cat >"$DIR/etc/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $DIR/coredns.kubeconfig originstack
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOF
    start coredns "$ASSETS/coredns" -conf "$DIR/etc/Corefile"

    wait_for "the node to be Ready" 120 bash -c \
        "'$ASSETS/kubectl' --kubeconfig='$DIR/admin.kubeconfig' get node '$NODE_NAME' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
    wait_for "the default ServiceAccount" 60 "$ASSETS/kubectl" --kubeconfig="$DIR/admin.kubeconfig" get serviceaccount default -n default
    for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy coredns; do
        running "$c" || die "$c exited; its log: $DIR/logs/$c.log"
    done
    cat >"$DIR/env" <<EOF
KUBECONFIG=$DIR/admin.kubeconfig
KUBECTL=$ASSETS/kubectl
HELM=$ASSETS/helm
CONTAINERD_ADDRESS=$DIR/containerd.sock
NODE_IP=$NODE_IP
NODE_NAME=$NODE_NAME
EOF
    log "node $NODE_NAME is Ready"
    cat "$DIR/env"
}

# Deletes every iptables rule that jumps to or sits in a KUBE-* or CNI-* chain, then the chains,
# in every table of both back ends (the kubelet and kube-proxy write nft here; other tools may
# write legacy). The machine's own rules are left as they are.
remove_chains() {
    local tool table rule chain
    for tool in iptables-nft ip6tables-nft iptables-legacy ip6tables-legacy; do
        command -v "$tool" >/dev/null || continue
        for table in filter nat mangle raw; do
            "$tool" -t "$table" -S >/dev/null 2>&1 || continue
            { "$tool" -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j (KUBE-|CNI-)' || true; } | while read -r rule; do
                # shellcheck disable=SC2086 # the rule is iptables' own quoting-free output
                eval "$tool -t $table ${rule/#-A/-D}" 2>/dev/null || true
            done
            for chain in $("$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-)/ { print $2 }'); do
                "$tool" -t "$table" -F "$chain" 2>/dev/null || true
            done
            for chain in $("$tool" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-)/ { print $2 }'); do
                "$tool" -t "$table" -X "$chain" 2>/dev/null || true
            done
        done
    done
}

# Whether any KUBE-* or CNI-* chain is left in either back end.
chains_left() {
    local tool
    for tool in iptables-nft-save ip6tables-nft-save iptables-legacy-save ip6tables-legacy-save; do
        command -v "$tool" >/dev/null || continue
        "$tool" 2>/dev/null | grep -qE '^:(KUBE-|CNI-)' && return 0
    done
    return 1
}

# Every process started with DIR in its command line or environment: the components, and the
# containerd shims, which outlive containerd.
our_processes() {
    local p
    for p in /proc/[0-9]*; do
        [[ "${p#/proc/}" == "$$" ]] && continue
        # A process may end between the listing and the read.
        if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$DIR/"; then echo "${p#/proc/}"; fi
    done
}

# Pids in the kubelet's pod cgroups (every container process), in every v1 hierarchy.
pod_processes() {
    local c
    for c in "$CGROUP_ROOT"/*/kubepods; do
        [[ -d "$c" ]] && find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -u
}

down() {
    [[ -d "$DIR" ]] || { log "$DIR does not exist: nothing to do"; return 0; }
    DIR="$(cd "$DIR" && pwd)"
    log "tearing down the cluster in $DIR"
    # The kubelet first, so it restarts nothing; then every container process; then the rest.
    local name pid
    for name in kubelet kube-proxy coredns kube-scheduler kube-controller-manager; do
        if [[ -f "$DIR/pids/$name" ]]; then kill -TERM "$(cat "$DIR/pids/$name")" 2>/dev/null || true; fi
    done
    for _ in 1 2 3; do
        for pid in $(pod_processes); do kill -KILL "$pid" 2>/dev/null || true; done
        sleep 0.2
    done
    for name in containerd kube-apiserver etcd; do
        if [[ -f "$DIR/pids/$name" ]]; then kill -TERM "$(cat "$DIR/pids/$name")" 2>/dev/null || true; fi
    done
    sleep 1
    for _ in 1 2 3 4 5; do
        pids="$(our_processes)"
        [[ -z "$pids" ]] && break
        kill -KILL $pids 2>/dev/null || true
        sleep 0.3
    done
    # Mounts under DIR (container root filesystems, volumes, network namespaces), deepest first.
    local mounts
    for _ in 1 2 3; do
        mounts="$(awk -v d="$DIR/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)"
        [[ -z "$mounts" ]] && break
        while read -r m; do umount -l "$m" 2>/dev/null || true; done <<<"$mounts"
    done
    # The pod cgroups, leaves first.
    local c
    for c in "$CGROUP_ROOT"/*/kubepods; do
        [[ -d "$c" ]] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    # The kubelet's, kube-proxy's and the CNI plugins' rules and chains, in both back ends.
    remove_chains
    local s f
    for s in "${SYSCTLS[@]}"; do
        f="$DIR/host/${s//\//.}"
        if [[ -f "$f" ]]; then cat "$f" >"/proc/sys/$s" 2>/dev/null || true; fi
    done
    # What is still there is reported, not hidden.
    local left=""
    [[ -n "$(our_processes)" ]] && left+=" processes: $(our_processes | tr '\n' ' ')"
    awk -v d="$DIR/" 'index($2, d) == 1' /proc/self/mounts | grep -q . && left+=" mounts"
    ip link show "$BRIDGE" >/dev/null 2>&1 && left+=" bridge $BRIDGE"
    chains_left && left+=" iptables chains"
    if [[ -z "$left" ]]; then
        rm -rf -- "$DIR"
        if [[ "$(cat "$LOCK" 2>/dev/null)" == "$DIR" ]]; then rm -f "$LOCK"; fi
        log "cluster removed"
    else
        die "left behind:$left (directory $DIR kept)"
    fi
}

cmd="${1:-}"
DIR="${2:-}"
[[ -n "$cmd" && -n "$DIR" ]] || { sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
case "$cmd" in
    up) up ;;
    down) down ;;
    watch)
        # stdin is the lifeline: a test process holds its write end and never writes. A Ctrl-C
        # or a timeout's signal to the test's process group must not kill the watcher before
        # it has cleaned up: it waits for the pipe to close instead.
        trap '' INT TERM HUP
        cat >/dev/null || true
        down ;;
    *) die "unknown command: $cmd" ;;
esac
