#!/usr/bin/env bash
# OriginStack playground without a cluster (`make demo`): the proxy (in-memory load balancer),
# three nginx-rtmp origins that heartbeat to its register API as SRS would, and ffmpeg
# publishing a test stream through the proxy. Prints what to play; Ctrl-C stops everything.
#
# Needs nginx with the RTMP module, ffmpeg and curl (`make deps` installs them) and a built
# proxy (`make demo` builds the release binary). Settings, all optional:
#
#   DEMO_PROXY_BIN      proxy binary            (target/release/originstack-proxy)
#   DEMO_RTMP_PORT      proxy RTMP port         (1935)
#   DEMO_HTTP_PORT      proxy HTTP streaming    (8080)
#   DEMO_SYSTEM_PORT    proxy system API        (12025)
#   DEMO_API_PORT, DEMO_WEBRTC_PORT, DEMO_SRT_PORT   the proxy's other listeners (1985, 8000, 10080)
#   DEMO_ORIGIN_PORTS   "rtmp:http" per origin  ("19351:8081 19352:8082 19353:8083")
#   DEMO_STREAM         app/stream published    (live/demo)
#   DEMO_VIDEO_SIZE     test picture size       (1280x720)
#   DEMO_DIR            working directory       (a fresh temporary one, removed on exit)
#   DEMO_TOKEN          the proxy's register token (random; written to $DEMO_DIR/token)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
proxy_bin="${DEMO_PROXY_BIN:-$root/target/release/originstack-proxy}"
rtmp_port="${DEMO_RTMP_PORT:-1935}"
http_port="${DEMO_HTTP_PORT:-8080}"
system_port="${DEMO_SYSTEM_PORT:-12025}"
api_port="${DEMO_API_PORT:-1985}"
webrtc_port="${DEMO_WEBRTC_PORT:-8000}"
srt_port="${DEMO_SRT_PORT:-10080}"
read -r -a origin_ports <<<"${DEMO_ORIGIN_PORTS:-19351:8081 19352:8082 19353:8083}"
stream="${DEMO_STREAM:-live/demo}"
video_size="${DEMO_VIDEO_SIZE:-1280x720}"
app="${stream%%/*}"
rtmp_module=/usr/lib/nginx/modules/ngx_rtmp_module.so

say() { printf '[demo] %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

for tool in nginx ffmpeg curl; do
  command -v "$tool" >/dev/null || die "$tool is missing: run \`make deps\`"
done
[ -x "$proxy_bin" ] || die "no proxy binary at $proxy_bin: run \`make demo\` (or cargo build --release -p originstack-proxy)"
[[ "$stream" == */* ]] || die "DEMO_STREAM must be app/stream, got $stream"

if [ -n "${DEMO_DIR:-}" ]; then
  dir="$DEMO_DIR"
  mkdir -p "$dir"
  remove_dir=0
else
  dir="$(mktemp -d -t originstack-demo-XXXXXX)"
  remove_dir=1
fi

# Every background job runs in a session (and so process group) of its own (`setsid`, which
# does not fork here, so `$!` is the job): stopping the group stops all it started (a
# heartbeat loop's curl and sleep too), and a terminal's Ctrl-C reaches only this script,
# which then stops the jobs in order.
jobs_started=()
: >"$dir/pids"
started() {
  jobs_started+=("$1")
  echo "$1" >>"$dir/pids"
}

stopping=0
cleanup() {
  local status=$?
  [ "$stopping" = 1 ] && return
  stopping=1
  trap - INT TERM EXIT
  say "stopping"
  local pid
  for pid in "${jobs_started[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  # The proxy drains on SIGTERM (PROXY_GRACE_QUIT_TIMEOUT below); nothing may outlive the demo.
  local deadline=$((SECONDS + 10))
  for pid in "${jobs_started[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  # A job's own children (a heartbeat's sleep) may take a moment longer to go.
  for pid in "${jobs_started[@]}"; do
    while kill -0 -- "-$pid" 2>/dev/null && [ $SECONDS -lt $((deadline + 2)) ]; do sleep 0.05; done
  done
  if [ "$remove_dir" = 1 ]; then rm -rf -- "$dir"; fi
  say "stopped"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_http() { # url, what
  local i
  for i in $(seq 1 100); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  die "$2 did not come up ($1); logs are in $dir"
}

# A register token as a cluster has one: origins put it in their heartbeat URL's path (what an
# SRS heartbeat keeps), and it reads the listings (no separate PROXY_API_TOKEN here).
token="${DEMO_TOKEN:-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')}"
echo "$token" >"$dir/token"

# The proxy: every listener on loopback, stream ownership in memory.
env -i PATH="$PATH" \
  PROXY_REGISTER_TOKEN="$token" \
  PROXY_RTMP_SERVER="127.0.0.1:$rtmp_port" \
  PROXY_HTTP_SERVER="127.0.0.1:$http_port" \
  PROXY_HTTP_API="127.0.0.1:$api_port" \
  PROXY_WEBRTC_SERVER="127.0.0.1:$webrtc_port" \
  PROXY_SRT_SERVER="127.0.0.1:$srt_port" \
  PROXY_SYSTEM_API="127.0.0.1:$system_port" \
  PROXY_LOAD_BALANCER_TYPE=memory \
  PROXY_GRACE_QUIT_TIMEOUT=2s PROXY_FORCE_QUIT_TIMEOUT=4s \
  setsid "$proxy_bin" >"$dir/proxy.log" 2>&1 &
started $!
wait_http "http://127.0.0.1:$system_port/healthz" "the proxy"
say "proxy up (log: $dir/proxy.log)"

# One origin: nginx-rtmp serving RTMP and HLS (the path SRS uses, so the proxy forwards HLS
# unchanged) plus its stat page; then an SRS-style heartbeat every 5 s.
start_origin() { # index, rtmp port, http port
  local n="$1" rtmp="$2" http="$3" odir="$dir/origin$1"
  mkdir -p "$odir/hls" "$odir/tmp"
  local load=""
  [ -f "$rtmp_module" ] && load="load_module \"$rtmp_module\";"
  cat >"$odir/nginx.conf" <<EOF
$load
daemon off;
master_process off;
pid "$odir/nginx.pid";
error_log "$odir/error.log" info;
events { worker_connections 1024; }
rtmp {
    access_log "$odir/rtmp-access.log";
    server {
        listen 127.0.0.1:$rtmp;
        chunk_size 4096;
        application $app {
            live on;
            record off;
            hls on;
            hls_path "$odir/hls/$app";
            hls_fragment 2s;
            hls_playlist_length 10s;
        }
    }
}
http {
    access_log off;
    client_body_temp_path "$odir/tmp/body";
    proxy_temp_path "$odir/tmp/proxy";
    fastcgi_temp_path "$odir/tmp/fastcgi";
    uwsgi_temp_path "$odir/tmp/uwsgi";
    scgi_temp_path "$odir/tmp/scgi";
    server {
        listen 127.0.0.1:$http;
        location = /stat { rtmp_stat all; }
        location / {
            root "$odir/hls";
            types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
            add_header Cache-Control no-cache;
        }
    }
}
EOF
  setsid nginx -p "$odir" -c "$odir/nginx.conf" -e "$odir/error.log" </dev/null >"$odir/stderr.log" 2>&1 &
  local nginx_pid=$!
  started "$nginx_pid"
  wait_http "http://127.0.0.1:$http/stat" "origin $n (nginx-rtmp on $rtmp/$http)"
  # What SRS 7 sends with `heartbeat { ports on; }` (the tests' originstack_e2e::srs sends the
  # same): these fields, POSTed to the URL's path with the headers of SRS's HTTP client and no
  # other. `service` changes on every start: the proxy tells a restarted origin by it.
  local body
  body=$(printf '{"device_id":"demo-origin%s","ip":"127.0.0.1","server":"demo-origin%s","service":"%s","pid":"%s","rtmp":["%s"],"http":["%s"]}' \
    "$n" "$n" "$RANDOM$RANDOM" "$nginx_pid" "$rtmp" "$http")
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c '
    while true; do
      curl -fsS -o /dev/null --max-time 2 -X POST -A "SRS/7.0.18(Hang)" -H "Accept:" \
        -H "Connection: Keep-Alive" -H "Content-Type: application/json" \
        --data-binary "$1" "$2" || echo "[demo] heartbeat of origin $3 failed" >&2
      sleep 5
    done' heartbeat "$body" "http://127.0.0.1:$system_port/api/v1/srs/register/$token" "$n" \
    </dev/null >/dev/null 2>>"$dir/heartbeats.log" &
  started $!
  say "origin $n up: rtmp 127.0.0.1:$rtmp, http 127.0.0.1:$http, heartbeating to the proxy"
}

n=1
for pair in "${origin_ports[@]}"; do
  start_origin "$n" "${pair%%:*}" "${pair##*:}"
  n=$((n + 1))
done
for i in $(seq 1 50); do
  alive=$(curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$system_port/api/v1/origins" | grep -o '"alive":true' | wc -l)
  [ "$alive" -ge "${#origin_ports[@]}" ] && break
  sleep 0.1
done
[ "$alive" -ge "${#origin_ports[@]}" ] || die "the origins did not register: $(cat "$dir/heartbeats.log")"

# The publisher goes through the proxy, which picks the origin (fewest streams).
setsid ffmpeg -hide_banner -nostdin -nostats -loglevel warning \
  -re -f lavfi -i "testsrc=size=$video_size:rate=30" \
  -re -f lavfi -i "sine=frequency=440:sample_rate=48000" \
  -map 0:v -map 1:a \
  -c:v libx264 -preset veryfast -tune zerolatency -pix_fmt yuv420p -g 60 -keyint_min 60 -sc_threshold 0 -b:v 2500k \
  -c:a aac -b:a 128k \
  -f flv -flvflags no_duration_filesize "rtmp://127.0.0.1:$rtmp_port/$stream" \
  </dev/null >"$dir/ffmpeg.log" 2>&1 &
ffmpeg_pid=$!
started "$ffmpeg_pid"

owner=""
for i in $(seq 1 100); do
  # One JSON object per stream; its owner is the "origin" field.
  owner=$(curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$system_port/api/v1/streams" | grep -o '{[^{}]*}' \
    | grep "\"stream\":\"[^\"]*/$stream\"" | sed -n 's/.*"origin":"\([^"]*\)".*/\1/p' | head -1 || true)
  [ -n "$owner" ] && break
  kill -0 "$ffmpeg_pid" 2>/dev/null || die "ffmpeg stopped: $(cat "$dir/ffmpeg.log")"
  sleep 0.1
done
[ -n "$owner" ] || die "the stream did not reach an origin; see $dir/proxy.log"
# nginx-rtmp writes the first HLS segment after one fragment.
for i in $(seq 1 100); do
  curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$http_port/$stream.m3u8" 2>/dev/null && break
  sleep 0.1
done

cat <<EOF

OriginStack demo is running: ${#origin_ports[@]} nginx-rtmp origins behind the proxy; ffmpeg
publishes $stream through the proxy, which put it on $owner.

Play it:
  RTMP      rtmp://127.0.0.1:$rtmp_port/$stream
            ffplay rtmp://127.0.0.1:$rtmp_port/$stream
  HLS       http://127.0.0.1:$http_port/$stream.m3u8
            ffplay http://127.0.0.1:$http_port/$stream.m3u8   (or Safari, VLC; segments come through the proxy)
  HTTP-FLV  http://127.0.0.1:$http_port/$stream.flv
            routed to $owner like the others, but nginx-rtmp cannot serve HTTP-FLV, so this
            demo's origins answer 404 here; with SRS origins (the product) this URL plays.

Look inside (the listings need the register token, kept in $dir/token):
  curl -H "Authorization: Bearer $token" http://127.0.0.1:$system_port/api/v1/streams   # which origin owns the stream
  curl -H "Authorization: Bearer $token" http://127.0.0.1:$system_port/api/v1/origins   # the registered origins and their load
  curl http://127.0.0.1:$system_port/metrics           # Prometheus metrics (open)

Files and logs: $dir
Press Ctrl-C to stop everything.
EOF

while kill -0 "$ffmpeg_pid" 2>/dev/null; do
  sleep 1
done
die "ffmpeg stopped: $(tail -5 "$dir/ffmpeg.log")"
