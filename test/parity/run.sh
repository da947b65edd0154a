#!/usr/bin/env bash
# The behaviour parity test of the three enforcement points (parity.mjs):
# one `pdp serve --dev` with a --resource for each; the Go middleware
# (examples/go-sdk), the TypeScript middleware (examples/typescript) and the
# gateway (a second `pdp serve --config` whose resources trust the dev
# issuer and forward to a plain TypeScript SDK server, upstream.mjs) in
# front of it. Each point runs twice: its server answering with JSON
# (examples: -json/--json; the upstream's /mcp) and with SSE streams whose
# events it keeps for Last-Event-ID (-resumable/--resumable; /mcp-sse).
# Builds pdp and the Go example (unless PDP_BIN is set, only the example),
# installs examples/typescript (npm ci) when needed. Everything it starts
# runs in its own process group, ended on exit.
#
# Usage: test/parity/run.sh
# Env:   PDP_BIN=path  use this pdp binary instead of building one
#        KEEP_TMP=1    keep the temporary directory (logs, configs)
# The last line is "parity: N passed, M failed"; the exit code is non-zero
# on a difference or a failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
LIB_NAME=run.sh
LIB_SUMMARY="parity: 0 passed, 1 failed"
# shellcheck source=../lib.sh
source "$root/test/lib.sh"
lib_init pdp-parity
need_node
command -v go >/dev/null || die "go is required (the Go example is built)"

# 1. Builds: pdp and the Go example (in parallel), the TypeScript package and example.
echo "building..."
(cd "$root" && go build -o "$tmp/go-sdk" ./examples/go-sdk) >"$tmp/build-go.log" 2>&1 &
go_build=$!
pdp_binary
pep_package
ex="$root/examples/typescript"
if [[ ! -f "$ex/node_modules/@modelcontextprotocol/sdk/package.json" || ! -e "$ex/node_modules/@mcp-pdp/pep" ]]; then
    (cd "$ex" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in examples/typescript failed"
fi
(cd "$ex" && node node_modules/typescript/bin/tsc -p tsconfig.json) || die "building examples/typescript failed"
wait "$go_build" || die "go build ./examples/go-sdk failed: $(tail -5 "$tmp/build-go.log")"

# 2. Addresses.
read -r p_pdp p_go p_gosse p_ts p_tssse p_gwapi p_gw p_up <<<"$(free_ports 8)"
pdp_url="http://127.0.0.1:$p_pdp"
go_url="http://127.0.0.1:$p_go/mcp"
gosse_url="http://127.0.0.1:$p_gosse/mcp"
ts_url="http://127.0.0.1:$p_ts/mcp"
tssse_url="http://127.0.0.1:$p_tssse/mcp"
gw_url="http://127.0.0.1:$p_gw/mcp"
gwsse_url="http://127.0.0.1:$p_gw/mcp-sse"

# 3. The dev PDP, one resource per enforcement point and mode (the gateway's
# resources are the gateway PDP's: the dev PDP only issues their tokens).
start pdp.log "$pdp_bin" serve --dev --listen "127.0.0.1:$p_pdp" --data-dir "$tmp/dev" \
    --resource "$go_url" --resource "$gosse_url" --resource "$ts_url" --resource "$tssse_url" --resource "$gw_url" --resource "$gwsse_url"
wait_for "the dev pdp" 30 http_ok "$pdp_url/readyz"

# 4. The enforcement points.
start go.log "$tmp/go-sdk" -pdp "$pdp_url" -listen "127.0.0.1:$p_go" -json
start go-sse.log "$tmp/go-sdk" -pdp "$pdp_url" -listen "127.0.0.1:$p_gosse" -resumable
start ts.log node "$ex/dist/server.js" --pdp "$pdp_url" --listen "127.0.0.1:$p_ts" --json
start ts-sse.log node "$ex/dist/server.js" --pdp "$pdp_url" --listen "127.0.0.1:$p_tssse" --resumable
start upstream.log node "$here/upstream.mjs" "127.0.0.1:$p_up"
resource() { # resource URI UPSTREAM_PATH: a gateway resource trusting the dev issuer
    cat <<YAML
  - uri: $1
    issuer: $pdp_url/dev
    jwks_uri: $pdp_url/dev/jwks.json
    upstream:
      url: http://127.0.0.1:$p_up$2
YAML
}
cat >"$tmp/gateway.yaml" <<YAML
listen: 127.0.0.1:$p_gwapi
data_dir: $tmp/gateway-data
instance: parity-gateway
gateway:
  listen: 127.0.0.1:$p_gw
resources:
$(resource "$gw_url" /mcp)
$(resource "$gwsse_url" /mcp-sse)
audit:
  enabled: false
log:
  level: warn
YAML
wait_for "the upstream" 20 grep -q "^serving " "$tmp/upstream.log"
start gateway.log "$pdp_bin" serve --config "$tmp/gateway.yaml"
for u in "$go_url" "$gosse_url"; do wait_for "the Go example at $u" 20 grep -q "^serving $u\$" "$tmp/go.log" "$tmp/go-sse.log"; done
for u in "$ts_url" "$tssse_url"; do wait_for "the TypeScript example at $u" 20 grep -q "^serving $u\$" "$tmp/ts.log" "$tmp/ts-sse.log"; done
wait_for "the gateway" 30 http_ok "http://127.0.0.1:$p_gwapi/readyz"

# 5. The cases.
rc=0
PARITY_POINTS="[{\"name\":\"go\",\"json\":\"$go_url\",\"sse\":\"$gosse_url\"},{\"name\":\"ts\",\"json\":\"$ts_url\",\"sse\":\"$tssse_url\"},{\"name\":\"gateway\",\"json\":\"$gw_url\",\"sse\":\"$gwsse_url\"}]" \
    PDP_BIN="$pdp_bin" PDP_DATA_DIR="$tmp/dev" timeout 120 node "$here/parity.mjs" || rc=$?
[[ $rc -eq 124 ]] && echo "parity: 0 passed, 1 failed (timed out)"
exit $rc
