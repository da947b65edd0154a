#!/usr/bin/env bash
# End-to-end tests with real MCP clients (the official TypeScript SDK, inspector-cli).
#
# Builds the pdp binary, starts on 127.0.0.1 (free ports):
#   - a test OAuth authorization server  (lib/as.mjs)
#   - mcp-pdp with a config whose resources are the PEP's URLs and whose issuer is that AS
#   - a PEP: an SDK McpServer that asks the PDP before answering (lib/pep.mjs)
# then runs stepup.test.mjs with node:test; then gateway.test.mjs, which starts its own
# environment (lib/gateway-env.mjs: pdp's gateway in front of server-everything over stdio and
# Streamable HTTP) and stops it; then devmode.test.mjs, likewise (lib/devmode-env.mjs:
# `pdp serve --dev --resource` and no other authorization server). Cleans up every process it
# started.
#
# Usage: test/clients/run.sh [extra node --test flags]
# Env:   PDP_AUDIT=1   run the PDPs with audit on (embedded NATS); default off
#        KEEP_TMP=1    keep the temporary directory (config, logs)
#        PDP_BIN=path  use this pdp binary instead of building one
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
LIB_NAME=run.sh
LIB_LOG_LINES=40
# shellcheck source=../lib.sh
source "$root/test/lib.sh"
lib_init pdp-client-test
need_node

# 1. The PDP binary (or PDP_BIN, an already built one).
pdp_binary

# 2. Node dependencies (pinned by package-lock.json); reinstalled when one is missing.
npm_deps "$here" @modelcontextprotocol/sdk @modelcontextprotocol/server-everything @modelcontextprotocol/inspector-cli zod

read -r as_port pdp_port pep_port <<<"$(free_ports 3)"
as_url="http://127.0.0.1:$as_port"
pdp_url="http://127.0.0.1:$pdp_port"
pep_url="http://127.0.0.1:$pep_port"

# 3. The authorization server.
start as.log node "$here/lib/serve.mjs" as --port "$as_port"
wait_for "the authorization server" 20 http_ok "$as_url/oauth/jwks.json"

# 4. The PDP: two resources on the PEP, same issuer; the second uses challenge_scopes: accumulate.
audit_enabled=false
[[ "${PDP_AUDIT:-}" == 1 ]] && audit_enabled=true
cat >"$tmp/pdp.yaml" <<EOF
listen: 127.0.0.1:$pdp_port
data_dir: $tmp/data
instance: client-test
resources:
  - uri: $pep_url/mcp
    issuer: $as_url/oauth
    jwks_uri: $as_url/oauth/jwks.json
    scopes_supported: [qr:generate, profile]
  - uri: $pep_url/mcp-accumulate
    issuer: $as_url/oauth
    jwks_uri: $as_url/oauth/jwks.json
    scopes_supported: [qr:generate, profile]
    challenge_scopes: accumulate
audit:
  enabled: $audit_enabled
log:
  level: info
EOF
start pdp.log "$pdp_bin" serve --config "$tmp/pdp.yaml"
wait_for "pdp" 20 http_ok "$pdp_url/readyz"

# 5. The PEP.
start pep.log node "$here/lib/serve.mjs" pep --port "$pep_port" --pdp "$pdp_url" --paths /mcp,/mcp-accumulate
wait_for "the pep" 20 http_ok "$pep_url/_test/log"

echo "as=$as_url pdp=$pdp_url pep=$pep_url"

# 6. The client tests. node:test's spec reporter ends with "ℹ pass N", "ℹ fail N", ...
set +e
PEP_URL="$pep_url" AS_URL="$as_url" PDP_URL="$pdp_url" \
    timeout 90 node --test --test-reporter=spec --test-timeout=30000 "$@" "$here/stepup.test.mjs" 2>&1 | tee "$tmp/test.out"
rc=${PIPESTATUS[0]}

# 7. The gateway tests: their own AS, pdp serve with a gateway, server-everything (lib/gateway-env.mjs).
echo "gateway tests (pdp's gateway in front of @modelcontextprotocol/server-everything)..."
PDP_BIN="$pdp_bin" \
    timeout 100 node --test --test-reporter=spec --test-timeout=60000 "$@" "$here/gateway.test.mjs" 2>&1 | tee "$tmp/gateway-test.out"
grc=${PIPESTATUS[0]}

# 8. The dev mode tests: pdp serve --dev protecting a PEP of ours, its dev authorization server the
#    only one (lib/devmode-env.mjs).
echo "dev mode tests (pdp serve --dev --resource, no other authorization server)..."
PDP_BIN="$pdp_bin" \
    timeout 90 node --test --test-reporter=spec --test-timeout=30000 "$@" "$here/devmode.test.mjs" 2>&1 | tee "$tmp/devmode-test.out"
drc=${PIPESTATUS[0]}
set -e
[[ $rc -ne 0 ]] || rc=$grc
[[ $rc -ne 0 ]] || rc=$drc

# The sums over the suites of node:test's "ℹ KIND N" lines.
count() { count_tests "$1" "$tmp/test.out" "$tmp/gateway-test.out" "$tmp/devmode-test.out"; }
passed=$(count pass)
failed=$(count fail)
todo=$(count todo)
skipped=$(count skipped)
if [[ $rc -ne 0 && "$failed" == 0 ]]; then failed=1; fi
if [[ "$todo" != 0 ]]; then echo "($todo todo: known issues, see stepup.test.mjs)"; fi
if [[ "$skipped" != 0 ]]; then echo "($skipped skipped: known gateway bugs, see gateway.test.mjs; or no openssl for devmode.test.mjs)"; fi
# The closing line, in the plain form CI reads.
echo "clients: $passed passed, $failed failed"
exit $rc
