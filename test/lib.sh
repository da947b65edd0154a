# Shared by the test runners (test/clients/run.sh, test/parity/run.sh,
# clients/typescript/run-tests.sh, examples/typescript/run-test.sh): one
# temporary directory, the processes a runner starts each in its own
# process group and ended on exit, waiting for readiness, free loopback
# ports, the pdp binary and the TypeScript package.
#
# Usage, after `set -euo pipefail`:
#   LIB_NAME=run.sh                               # names the runner in messages
#   LIB_SUMMARY="parity: 0 passed, 1 failed"      # printed by die (the runner's closing line), or unset
#   source "$root/test/lib.sh"
#   lib_init pdp-parity                           # sets tmp, pids; traps EXIT, INT, TERM
# Env: KEEP_TMP=1 keeps the temporary directory; PDP_BIN=path is the pdp
# binary (pdp_binary builds one otherwise).
# shellcheck shell=bash

lib_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# lib_init PREFIX: the temporary directory $tmp, the process list, the traps.
lib_init() {
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
    pids=()
    trap lib_cleanup EXIT
    trap 'exit 130' INT TERM
}

# lib_cleanup: ends every process group started (TERM, up to 5 s each,
# then KILL); on failure shows the end of each $tmp/*.log.
lib_cleanup() {
    local rc=$? p f
    for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 -- "-$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$p" 2>/dev/null || true
    done
    if [[ $rc -ne 0 ]]; then
        for f in "$tmp"/*.log; do
            [[ -s "$f" ]] && { echo "--- $(basename "$f") (last ${LIB_LOG_LINES:-20} lines)" >&2; tail -n "${LIB_LOG_LINES:-20}" "$f" >&2; }
        done
    fi
    if [[ "${KEEP_TMP:-}" == 1 ]]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
    exit $rc
}

# die MESSAGE: fails the runner (its closing line, when it has one).
die() {
    echo "${LIB_NAME:-test}: $*" >&2
    [[ -z "${LIB_SUMMARY:-}" ]] || echo "$LIB_SUMMARY"
    exit 1
}

# need_node: node >= 20 and setsid (util-linux).
need_node() {
    command -v node >/dev/null || die "node is required (>= 20)"
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || die "node >= 20 is required"
    command -v setsid >/dev/null || die "setsid is required (util-linux)"
}

# start LOG COMMAND...: runs COMMAND in its own process group, output to
# $tmp/LOG; ended on exit.
start() {
    local log=$1
    shift
    setsid "$@" >"$tmp/$log" 2>&1 &
    pids+=($!)
}

# run_group OUT COMMAND...: runs COMMAND in its own process group (ended on
# exit, with everything it starts), output to $tmp/OUT; returns its status.
run_group() {
    local out=$1 rc=0
    shift
    setsid "$@" >"$tmp/$out" 2>&1 &
    pids+=($!)
    wait "$!" || rc=$?
    return $rc
}

# wait_for WHAT SECONDS COMMAND...: until COMMAND succeeds; fails the runner
# when it does not within SECONDS or a process started has exited.
wait_for() {
    local what=$1 secs=$2 p
    shift 2
    for _ in $(seq $((secs * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || die "a process exited while waiting for $what (see the logs)"; done
        sleep 0.1
    done
    die "$what did not become ready"
}

# http_ok URL: the URL answers 2xx (for wait_for).
http_ok() { curl -fsS -o /dev/null --max-time 1 "$1"; }

# free_ports N: N distinct free loopback ports, on one line.
free_ports() {
    node -e 'const net=require("net");(async()=>{const ps=[];while(ps.length<+process.argv[1]){const p=await new Promise(r=>{const s=net.createServer();s.listen(0,"127.0.0.1",()=>{const {port}=s.address();s.close(()=>r(port))})});if(!ps.includes(p))ps.push(p)}console.log(ps.join(" "))})()' "$1"
}

# pdp_binary: sets pdp_bin to PDP_BIN, or builds pdp into $tmp.
pdp_binary() {
    pdp_bin="${PDP_BIN:-}"
    if [[ -z "$pdp_bin" ]]; then
        command -v go >/dev/null || die "go is required to build pdp (or set PDP_BIN)"
        echo "building pdp..."
        (cd "$lib_root" && go build -o "$tmp/pdp" ./cmd/pdp) || die "go build ./cmd/pdp failed"
        pdp_bin="$tmp/pdp"
    fi
    [[ -x "$pdp_bin" ]] || die "PDP_BIN $pdp_bin is not an executable"
}

# npm_deps DIR PACKAGE...: npm ci in DIR when one of the packages is missing.
npm_deps() {
    local dir=$1 pkg missing=0
    shift
    for pkg in "$@"; do [[ -f "$dir/node_modules/$pkg/package.json" ]] || missing=1; done
    if [[ $missing == 1 ]]; then
        echo "installing node dependencies in ${dir#"$lib_root"/} (npm ci)..."
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in $dir failed"
    fi
}

# pep_package: builds clients/typescript (@mcp-pdp/pep) when it has no dist.
pep_package() {
    local pkg="$lib_root/clients/typescript"
    [[ ! -f "$pkg/dist/index.js" ]] || return 0
    echo "building @mcp-pdp/pep..."
    npm_deps "$pkg" typescript
    (cd "$pkg" && node node_modules/typescript/bin/tsc -p tsconfig.json) || die "building clients/typescript failed"
}

# count_tests KIND FILE...: the sum of node:test's "ℹ KIND N" lines (pass, fail, todo, skipped).
count_tests() {
    local k=$1
    shift
    awk -v k="$k" '$1 == "ℹ" && $2 == k && $3 ~ /^[0-9]+$/ {s += $3} END {print s + 0}' "$@" 2>/dev/null || echo 0
}
