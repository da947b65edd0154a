#!/usr/bin/env bash
# Runs the TypeScript example end to end: installs its dependencies (npm ci;
# @mcp-pdp/pep is the local clients/typescript, built first if it has no
# dist), builds pdp (unless PDP_BIN names one), starts
# `pdp serve --dev --resource http://127.0.0.1:PORT/mcp`, starts the example
# on PORT, and drives it with the official TypeScript SDK client and its OAuth
# provider against the dev authorization server (client.mjs). Everything it
# starts runs in its own process group, which is ended on exit.
#
# Usage: examples/typescript/run-test.sh
# Env:   PDP_BIN=path  use this pdp binary instead of building one
#        KEEP_TMP=1    keep the temporary directory (logs, the dev data dir)
# The last line is "typescript example: N passed, M failed"; the exit code is
# non-zero on a failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/pdp-ts-example.XXXXXX")"
pids=()

cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 -- "-$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$p" 2>/dev/null || true
    done
    if [[ $rc -ne 0 ]]; then
        for f in "$tmp"/*.log; do [[ -f "$f" ]] && { echo "--- $(basename "$f")" >&2; tail -20 "$f" >&2; }; done
    fi
    if [[ "${KEEP_TMP:-}" == 1 ]]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "run-test.sh: $*" >&2
    echo "typescript example: 0 passed, 1 failed"
    exit 1
}

command -v node >/dev/null || fail "node is required (>= 20)"
command -v setsid >/dev/null || fail "setsid is required (util-linux)"

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

wait_for() { # wait_for <what> <log> <seconds> <command...>
    local what=$1 log=$2 secs=$3; shift 3
    for _ in $(seq $((secs * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    fail "$what did not become ready (see $log)"
}

# 1. The package, then the example's dependencies (pinned by package-lock.json).
pkg="$root/clients/typescript"
if [[ ! -f "$pkg/dist/index.js" ]]; then
    echo "building @mcp-pdp/pep..."
    (cd "$pkg" && { [[ -d node_modules/typescript ]] || npm ci --no-audit --no-fund --loglevel=error; } && node node_modules/typescript/bin/tsc -p tsconfig.json) || fail "building clients/typescript failed"
fi
cd "$here"
echo "installing the example's dependencies (npm ci)..."
npm ci --no-audit --no-fund --loglevel=error >"$tmp/npm.log" 2>&1 || fail "npm ci failed: $(tail -5 "$tmp/npm.log")"
node node_modules/typescript/bin/tsc -p tsconfig.json || fail "tsc failed"

# 2. The PDP.
pdp_bin="${PDP_BIN:-}"
if [[ -z "$pdp_bin" ]]; then
    command -v go >/dev/null || fail "go is required to build pdp (or set PDP_BIN)"
    echo "building pdp..."
    (cd "$root" && go build -o "$tmp/pdp" ./cmd/pdp) || fail "go build ./cmd/pdp failed"
    pdp_bin="$tmp/pdp"
fi
[[ -x "$pdp_bin" ]] || fail "PDP_BIN $pdp_bin is not an executable"

# 3. The dev PDP and the example.
pdp_port=$(free_port)
mcp_port=$(free_port)
while [[ "$mcp_port" == "$pdp_port" ]]; do mcp_port=$(free_port); done
pdp_url="http://127.0.0.1:$pdp_port"
resource="http://127.0.0.1:$mcp_port/mcp"
setsid "$pdp_bin" serve --dev --listen "127.0.0.1:$pdp_port" --data-dir "$tmp/data" --resource "$resource" >"$tmp/pdp.log" 2>&1 &
pids+=($!)
wait_for "pdp" "$tmp/pdp.log" 30 curl -fsS "$pdp_url/readyz"

setsid node dist/server.js --pdp "$pdp_url" --listen "127.0.0.1:$mcp_port" >"$tmp/example.log" 2>&1 &
pids+=($!)
wait_for "the example" "$tmp/example.log" 20 grep -q "^serving $resource\$" "$tmp/example.log"
echo "$(cat "$tmp/example.log")"

# 4. The client.
set +e
timeout 60 node client.mjs "$resource"
rc=$?
set -e
[[ $rc -eq 124 ]] && echo "typescript example: 0 passed, 1 failed (the client timed out)"
exit $rc
