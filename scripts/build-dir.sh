#!/usr/bin/env bash
# Makes the shared build directory ($1, CARGO_TARGET_DIR) safe for this checkout.
#
# Every clone on the machine builds into one directory (the Makefile says why). Cargo keeps one
# artefact per workspace crate whatever the checkout's path, and takes it as fresh when no
# source file is newer than it: a checkout older than the one that built last could then run
# the other checkout's build (its sources, its CARGO_MANIFEST_DIR). So when the directory was
# last built from another checkout, this one's source times are set to now: everything of the
# workspace is rebuilt from this checkout's sources once, dependencies stay cached. Builds from
# the same checkout stay incremental.
set -euo pipefail
dir="${1:?usage: build-dir.sh TARGET_DIR}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
stamp="$dir/.originstack-checkout"
mkdir -p "$dir"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$root" ]; then
  if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked and new (not ignored) files: whatever a workspace crate may read while building.
    git -C "$root" ls-files -z --cached --others --exclude-standard \
      | (cd "$root" && xargs -0 -r touch -c --)
  else
    find "$root" -path "$root/target" -prune -o -path "$root/.git" -prune -o -type f -exec touch -c {} +
  fi
  printf '%s\n' "$root" >"$stamp"
fi
