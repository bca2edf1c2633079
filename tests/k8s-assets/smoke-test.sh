#!/usr/bin/env bash
# Smoke test for the cached binaries: start etcd + kube-apiserver on free
# loopback ports with a throw-away data dir, wait for /readyz with an admin
# bearer token (group system:masters), make a few API calls, run helm against
# the cluster, then stop everything and delete the temp dir.
#
# This is also the reference for the Rust test helper: it uses exactly the
# flags that helper should pass.
#
# Usage: tests/k8s-assets/smoke-test.sh     (builds the binaries if needed)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$("$here/build.sh" --print-path)"

work="$(mktemp -d "${TMPDIR:-/tmp}/originstack-k8s.XXXXXX")"
etcd_pid=""; api_pid=""
cleanup() {
    local rc=$?
    set +e
    local pid
    for pid in $api_pid $etcd_pid; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ $rc != 0 ]]; then
        echo "--- etcd.log (tail)" >&2; tail -n 20 "$work/etcd.log" >&2 || true
        echo "--- kube-apiserver.log (tail)" >&2; tail -n 40 "$work/kube-apiserver.log" >&2 || true
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

# A free loopback TCP port (nothing answers a connect on it).
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 30000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}
etcd_client_port="$(free_port)"
etcd_peer_port="$(free_port)"
api_port="$(free_port)"

# Service-account signing key pair, admin static token.
openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
token="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
echo "$token,admin,admin-uid,\"system:masters\"" >"$work/tokens.csv"

t0=${EPOCHREALTIME/./}
"$bin/etcd" \
    --name=default \
    --data-dir="$work/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_client_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_client_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="default=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync=true \
    --log-level=warn \
    >"$work/etcd.log" 2>&1 &
etcd_pid=$!

for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$etcd_client_port/health" 2>/dev/null | grep -q '"health":"true"' && break
    kill -0 "$etcd_pid" 2>/dev/null || { echo "etcd exited" >&2; exit 1; }
    sleep 0.1
done
t1=${EPOCHREALTIME/./}

"$bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_client_port" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$api_port" \
    --cert-dir="$work/certs" \
    --token-auth-file="$work/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-issuer="https://127.0.0.1:$api_port" \
    --service-account-key-file="$work/sa.pub" \
    --service-account-signing-key-file="$work/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --disable-admission-plugins=ServiceAccount \
    --allow-privileged=true \
    >"$work/kube-apiserver.log" 2>&1 &
api_pid=$!

url="https://127.0.0.1:$api_port"
auth=(-H "Authorization: Bearer $token")
ready=0
for _ in $(seq 600); do
    if [[ "$(curl -ksS "${auth[@]}" "$url/readyz" 2>/dev/null)" == ok ]]; then ready=1; break; fi
    kill -0 "$api_pid" 2>/dev/null || { echo "kube-apiserver exited" >&2; exit 1; }
    sleep 0.1
done
[[ $ready == 1 ]] || { echo "kube-apiserver not ready after 60s" >&2; exit 1; }
t2=${EPOCHREALTIME/./}

echo "etcd healthy after $(((t1 - t0) / 1000)) ms," \
     "kube-apiserver ready after $(((t2 - t1) / 1000)) ms more"
echo "readyz (verified against certs/apiserver.crt): $(curl -sS --cacert "$work/certs/apiserver.crt" "${auth[@]}" "$url/readyz")"
echo "serving cert SANs: $(openssl x509 -in "$work/certs/apiserver.crt" -noout -ext subjectAltName 2>/dev/null | tail -n +2 | tr -d ' ')"
echo "version: $(curl -ksS "${auth[@]}" "$url/version" | tr -d '\n ')"
# Anonymous requests are allowed to hit /readyz but RBAC must reject listing.
code="$(curl -ks -o /dev/null -w '%{http_code}' "$url/api/v1/namespaces")"
echo "anonymous GET /api/v1/namespaces -> $code (expect 403)"
[[ $code == 403 ]]
echo "admin namespaces: $(curl -ksS "${auth[@]}" "$url/api/v1/namespaces" | grep -o '"name": *"[a-z-]*"' | tr -d ' "' | sed 's/name://' | tr '\n' ' ')"

# Create a namespace + pod (ServiceAccount admission is disabled, so no SA token
# controller is needed).
curl -ksS -f "${auth[@]}" -H 'Content-Type: application/json' -X POST "$url/api/v1/namespaces" \
    -d '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"smoke"}}' >/dev/null
curl -ksS -f "${auth[@]}" -H 'Content-Type: application/json' -X POST "$url/api/v1/namespaces/smoke/pods" \
    -d '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}' >/dev/null
echo "created namespace smoke and pod smoke/p"

# helm against the cluster, through a kubeconfig using the same token.
cat >"$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: $url
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $token
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
EOF
export HELM_CONFIG_HOME="$work/helm/config" HELM_CACHE_HOME="$work/helm/cache" HELM_DATA_HOME="$work/helm/data"
"$bin/helm" version --short
"$bin/helm" create "$work/chart" >/dev/null
# The default chart has a Deployment/Service/ServiceAccount; no controllers
# run, so don't --wait.
"$bin/helm" --kubeconfig "$work/kubeconfig" install smoke-release "$work/chart" -n smoke >/dev/null
"$bin/helm" --kubeconfig "$work/kubeconfig" list -n smoke
echo "SMOKE TEST OK"
