#!/usr/bin/env bash
# The benchmarks, one command: `make bench` (or `bash bench/run.sh [section...]` to run only some
# sections and merge them with the results already in bench/out/).
#
# Each section prints one JSON object, saved as bench/out/<section>.json; a section that fails is
# saved as {"section": ..., "skipped": reason} and the run goes on. At the end bench/merge.ts
# merges every bench/out/*.json into bench/out/results.json and prints it, and
# `deno run --allow-read bench/report.ts` turns that into Markdown tables.
#
# Benchmarks compare things side by side in one run and report ratios (these machines are shared
# and noisy); nothing here asserts timing. Keep the whole run under about 5 minutes.
#
# Environment: DENO, BUN, NODE (executables; the Makefile exports DENO and BUN),
# SB_BENCH_CPUS (a `taskset -c` CPU list for every benchmark process; default unpinned),
# SB_BENCH_ROUNDS / SB_BENCH_BLOCKS / SB_BENCH_BLOCK_MS (see bench/segment.ts).
#
# To add a section: write a script that prints one JSON object on stdout (progress on stderr),
# then add one `section <name> <command...>` line in the SECTIONS part below.

set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
TOOLS=$ROOT/.tools/node_modules/.bin

DENO=${DENO:-$(command -v deno || echo "$TOOLS/deno")}
BUN=${BUN:-$(command -v bun || echo "$TOOLS/bun")}
NODE=${NODE:-$(command -v node || echo node)}
export DENO BUN NODE DENO_BIN=${DENO_BIN:-$DENO} BUN_BIN=${BUN_BIN:-$BUN}
DENO_RUN=("$DENO" run --allow-ffi --allow-read --allow-write --allow-env --allow-run
  --allow-sys --v8-flags=--expose-gc)

mkdir -p "$OUT"

# Removes segments a benchmark driver listed in bench/out/.segments and did not get to remove
# itself (it was interrupted): 1 GiB segments must not outlive the run.
remove_leftovers() {
  local kind id
  [[ -f $OUT/.segments ]] || return 0
  while read -r kind id; do
    case $kind in
      key) ipcrm -M "$id" 2>/dev/null ;;
      name) rm -f "/dev/shm/${id#/}" ;;
    esac
  done <"$OUT/.segments"
  rm -f "$OUT/.segments"
}
cleanup() {
  remove_leftovers
  rm -f "$OUT"/.*.tmp
}
trap cleanup EXIT
trap 'exit 130' INT TERM
SELECTED=("$@")
if [[ ${#SELECTED[@]} -eq 0 ]]; then
  # A full run: drop the last run's sections so that none of them is merged as if new.
  rm -f "$OUT"/*.json "$OUT/seconds.txt"
fi

wanted() {
  [[ ${#SELECTED[@]} -eq 0 ]] && return 0
  local s
  for s in "${SELECTED[@]}"; do [[ $s == "$1" ]] && return 0; done
  return 1
}

# Writes a JSON string literal of $1 (for reasons in skipped sections).
json_string() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/ }
  s=${s//$'\t'/ }
  printf '"%s"' "$s"
}

# section NAME COMMAND...: runs COMMAND, saves its stdout as bench/out/NAME.json, and records how
# long it took in bench/out/seconds.txt.
section() {
  local name=$1
  shift
  wanted "$name" || return 0
  echo "[bench] == $name ==" >&2
  local start=$SECONDS tmp="$OUT/.$name.tmp"
  if "$@" >"$tmp"; then
    mv "$tmp" "$OUT/$name.json"
  else
    local rc=$?
    { printf '{"section": "%s", "skipped": ' "$name"
      json_string "$* exited with $rc (its stderr is above in the log)"
      printf '}\n'; } >"$OUT/$name.json"
    rm -f "$tmp"
    echo "[bench] $name failed (exit $rc); recorded as skipped" >&2
  fi
  sed -i "/^$name /d" "$OUT/seconds.txt" 2>/dev/null
  echo "$name $((SECONDS - start))" >>"$OUT/seconds.txt"
}

# Installs the seed package (npm shared-buffer@1.4.0, built by node-gyp against the system's
# Node headers) into bench/seed/node_modules when missing. On failure SB_SEED_STATUS says why,
# and the segment section reports the seed as skipped with that reason.
install_seed() {
  local addon=bench/seed/node_modules/shared-buffer/build/Release/shared-buffer.node
  [[ -f $addon ]] && return 0
  local log=$OUT/seed-install.log nodedir=${npm_config_nodedir:-}
  if ! command -v npm >/dev/null || ! command -v "$NODE" >/dev/null; then
    export SB_SEED_STATUS="node or npm is not installed"
    return 0
  fi
  [[ -z $nodedir && -f /usr/include/node/node.h ]] && nodedir=/usr
  echo "[bench] installing the seed package shared-buffer@1.4.0 (log: $log)" >&2
  if ! npm_config_nodedir=$nodedir npm install --prefix bench/seed --no-save --no-package-lock \
    --no-audit --no-fund --loglevel=error shared-buffer@1.4.0 >"$log" 2>&1; then
    export SB_SEED_STATUS="npm install shared-buffer@1.4.0 failed: $(tail -n 5 "$log" | tr '\n' ' ')"
  elif [[ ! -f $addon ]]; then
    export SB_SEED_STATUS="npm install shared-buffer@1.4.0 built no $addon"
  fi
  return 0
}

# ---- SECTIONS (append new ones here) ----------------------------------------------------------

section machine "${DENO_RUN[@]}" bench/machine.ts

if wanted segment; then install_seed; fi
section segment "${DENO_RUN[@]}" bench/segment.ts

# wait/notify round trips, Mutex and notify costs (about 40 s). The system call check runs only
# when `strace` can trace here; otherwise it is reported as skipped with the reason
# (SB_WAIT_STRACE=0 skips it too).
section wait "${DENO_RUN[@]}" bench/wait.ts

# Channel: one-way throughput and round trips against Unix sockets, stdio, Bun's ipc and the Rust
# ring, by placement (about 2.5 minutes). Also draws bench/out/channel.svg.
section channel "${DENO_RUN[@]}" bench/channel.ts

# Engine-owned buffers: attach cost by kind of buffer, unlink with and without reporting to the
# engine, and the forced collection after ENOSPC, in Deno and Bun (about 20 s).
section ownership "${DENO_RUN[@]}" bench/ownership.ts

# ---- merge and print ---------------------------------------------------------------------------

"${DENO_RUN[@]}" bench/merge.ts
