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
LIB_NAME=run-test.sh
LIB_SUMMARY="typescript example: 0 passed, 1 failed"
# shellcheck source=../../test/lib.sh
source "$root/test/lib.sh"
lib_init pdp-ts-example
need_node

# 1. The package, then the example's dependencies (pinned by package-lock.json).
pep_package
cd "$here"
echo "installing the example's dependencies (npm ci)..."
npm ci --no-audit --no-fund --loglevel=error >"$tmp/npm.log" 2>&1 || die "npm ci failed: $(tail -5 "$tmp/npm.log")"
node node_modules/typescript/bin/tsc -p tsconfig.json || die "tsc failed"

# 2. The PDP.
pdp_binary

# 3. The dev PDP and the example.
read -r pdp_port mcp_port <<<"$(free_ports 2)"
pdp_url="http://127.0.0.1:$pdp_port"
resource="http://127.0.0.1:$mcp_port/mcp"
start pdp.log "$pdp_bin" serve --dev --listen "127.0.0.1:$pdp_port" --data-dir "$tmp/data" --resource "$resource"
wait_for "pdp" 30 http_ok "$pdp_url/readyz"
start example.log node dist/server.js --pdp "$pdp_url" --listen "127.0.0.1:$mcp_port"
wait_for "the example" 20 grep -q "^serving $resource\$" "$tmp/example.log"
cat "$tmp/example.log"

# 4. The client.
set +e
timeout 60 node client.mjs "$resource"
rc=$?
set -e
[[ $rc -eq 124 ]] && echo "typescript example: 0 passed, 1 failed (the client timed out)"
exit $rc
