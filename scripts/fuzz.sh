#!/usr/bin/env bash
# Runs every cargo-fuzz target of the proxy (proxy/fuzz) for SECONDS each, one after another,
# and prints how many inputs each ran. A crash stops the pass with libFuzzer's report and the
# input that caused it (proxy/fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [SECONDS]      default 600 (`make fuzz`); `make fuzz-smoke` runs 10
#
# Needs the nightly toolchain and cargo-fuzz (`make deps` installs both).
set -euo pipefail
seconds="${1:-600}"
cd "$(dirname "$0")/../proxy"

cargo +nightly fuzz build -O
summary=()
for target in $(cargo +nightly fuzz list); do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  # New inputs go to the (ignored) corpus; committed seeds are read as a second corpus.
  dirs=("$corpus")
  [ -d "fuzz/seeds/$target" ] && dirs+=("fuzz/seeds/$target")
  log="$(mktemp)"
  echo "[fuzz] $target for ${seconds}s" >&2
  if ! cargo +nightly fuzz run -O "$target" "${dirs[@]}" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    # The panic message sits above libFuzzer's long stack dump; show it first.
    grep -A 6 'panicked at' "$log" | head -n 20 >&2 || true
    tail -n 60 "$log" >&2
    echo "[fuzz] $target FAILED (log: $log)" >&2
    exit 1
  fi
  runs="$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)"
  summary+=("$target: ${runs:-finished}")
  rm -f "$log"
done
printf '[fuzz] %s\n' "${summary[@]}" >&2
