#!/usr/bin/env bash
# The behaviour parity test of the three enforcement points (parity.mjs):
# one `pdp serve --dev` with a --resource for each; the Go middleware
# (examples/go-sdk), the TypeScript middleware (examples/typescript) and the
# gateway (a second `pdp serve --config` whose resource trusts the dev
# issuer and forwards to a plain TypeScript SDK server, upstream.mjs) in
# front of it. Builds pdp and the Go example (unless PDP_BIN is set, only the
# example), installs examples/typescript (npm ci) when needed. Everything it
# starts runs in its own process group, ended on exit.
#
# Usage: test/parity/run.sh
# Env:   PDP_BIN=path  use this pdp binary instead of building one
#        KEEP_TMP=1    keep the temporary directory (logs, configs)
# The last line is "parity: N passed, M failed"; the exit code is non-zero
# on a difference or a failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/pdp-parity.XXXXXX")"
pids=()

cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 -- "-$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$p" 2>/dev/null || true
    done
    if [[ $rc -ne 0 ]]; then
        for f in "$tmp"/*.log; do [[ -f "$f" ]] && { echo "--- $(basename "$f")" >&2; tail -15 "$f" >&2; }; done
    fi
    if [[ "${KEEP_TMP:-}" == 1 ]]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "run.sh: $*" >&2
    echo "parity: 0 passed, 1 failed"
    exit 1
}

command -v node >/dev/null || fail "node is required (>= 20)"
command -v go >/dev/null || fail "go is required (the Go example is built)"
command -v setsid >/dev/null || fail "setsid is required (util-linux)"

free_ports() { # free_ports N: N distinct free loopback ports
    node -e 'const net=require("net");(async()=>{const ps=[];while(ps.length<+process.argv[1]){const p=await new Promise(r=>{const s=net.createServer();s.listen(0,"127.0.0.1",()=>{const {port}=s.address();s.close(()=>r(port))})});if(!ps.includes(p))ps.push(p)}console.log(ps.join(" "))})()' "$1"
}

wait_for() { # wait_for <what> <seconds> <command...>
    local what=$1 secs=$2; shift 2
    for _ in $(seq $((secs * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    fail "$what did not become ready"
}

start() { # start <log> <command...>: in its own process group
    local log=$1; shift
    setsid "$@" >"$tmp/$log" 2>&1 &
    pids+=($!)
}

# 1. Builds: pdp and the Go example (in parallel), the TypeScript package and example.
pdp_bin="${PDP_BIN:-}"
echo "building..."
(cd "$root" && go build -o "$tmp/go-sdk" ./examples/go-sdk) >"$tmp/build-go.log" 2>&1 &
go_build=$!
if [[ -z "$pdp_bin" ]]; then
    (cd "$root" && go build -o "$tmp/pdp" ./cmd/pdp) || fail "go build ./cmd/pdp failed"
    pdp_bin="$tmp/pdp"
fi
[[ -x "$pdp_bin" ]] || fail "PDP_BIN $pdp_bin is not an executable"
pkg="$root/clients/typescript"
if [[ ! -f "$pkg/dist/index.js" ]]; then
    (cd "$pkg" && { [[ -d node_modules/typescript ]] || npm ci --no-audit --no-fund --loglevel=error; } && node node_modules/typescript/bin/tsc -p tsconfig.json) || fail "building clients/typescript failed"
fi
ex="$root/examples/typescript"
if [[ ! -f "$ex/node_modules/@modelcontextprotocol/sdk/package.json" || ! -e "$ex/node_modules/@mcp-pdp/pep" ]]; then
    (cd "$ex" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci in examples/typescript failed"
fi
(cd "$ex" && node node_modules/typescript/bin/tsc -p tsconfig.json) || fail "building examples/typescript failed"
wait "$go_build" || fail "go build ./examples/go-sdk failed: $(tail -5 "$tmp/build-go.log")"

# 2. Addresses.
read -r p_pdp p_go p_ts p_gwapi p_gw p_up <<<"$(free_ports 6)"
pdp_url="http://127.0.0.1:$p_pdp"
go_url="http://127.0.0.1:$p_go/mcp"
ts_url="http://127.0.0.1:$p_ts/mcp"
gw_url="http://127.0.0.1:$p_gw/mcp"

# 3. The dev PDP, one resource per enforcement point (the gateway's
# resource is the gateway PDP's: the dev PDP only issues its tokens).
start pdp.log "$pdp_bin" serve --dev --listen "127.0.0.1:$p_pdp" --data-dir "$tmp/dev" \
    --resource "$go_url" --resource "$ts_url" --resource "$gw_url"
wait_for "the dev pdp" 30 curl -fsS "$pdp_url/readyz"

# 4. The enforcement points.
start go.log "$tmp/go-sdk" -pdp "$pdp_url" -listen "127.0.0.1:$p_go"
start ts.log node "$ex/dist/server.js" --pdp "$pdp_url" --listen "127.0.0.1:$p_ts"
start upstream.log node "$here/upstream.mjs" "127.0.0.1:$p_up"
cat >"$tmp/gateway.yaml" <<YAML
listen: 127.0.0.1:$p_gwapi
data_dir: $tmp/gateway-data
instance: parity-gateway
gateway:
  listen: 127.0.0.1:$p_gw
resources:
  - uri: $gw_url
    issuer: $pdp_url/dev
    jwks_uri: $pdp_url/dev/jwks.json
    upstream:
      url: http://127.0.0.1:$p_up/mcp
audit:
  enabled: false
log:
  level: warn
YAML
wait_for "the upstream" 20 grep -q "^serving " "$tmp/upstream.log"
start gateway.log "$pdp_bin" serve --config "$tmp/gateway.yaml"
wait_for "the Go example" 20 grep -q "^serving $go_url\$" "$tmp/go.log"
wait_for "the TypeScript example" 20 grep -q "^serving $ts_url\$" "$tmp/ts.log"
wait_for "the gateway" 30 curl -fsS "http://127.0.0.1:$p_gwapi/readyz"

# 5. The cases.
set +e
PARITY_POINTS="[{\"name\":\"go\",\"url\":\"$go_url\"},{\"name\":\"ts\",\"url\":\"$ts_url\"},{\"name\":\"gateway\",\"url\":\"$gw_url\"}]" \
    PDP_BIN="$pdp_bin" PDP_DATA_DIR="$tmp/dev" timeout 90 node "$here/parity.mjs"
rc=$?
set -e
[[ $rc -eq 124 ]] && echo "parity: 0 passed, 1 failed (timed out)"
exit $rc
