#!/usr/bin/env bash
# Tests of @mcp-pdp/pep (clients/typescript): installs the pinned node
# dependencies (npm ci) when they are missing, builds the package with tsc,
# builds pdp (unless PDP_BIN names one), then runs test/*.test.mjs with
# node --test. Each test file starts its own authorization server, pdp and
# SDK servers on free loopback ports and stops them; this script runs the
# tests in their own process group and ends that group on exit, so nothing
# is left running.
#
# Usage: clients/typescript/run-tests.sh [extra node --test flags]
# The test files run one after the other (--test-concurrency=1): each picks
# free ports and binds them later, and two files in parallel could pick one.
# Env:   PDP_BIN=path  use this pdp binary instead of building one
#        KEEP_TMP=1    keep the temporary directories
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/pdp-ts-run.XXXXXX")"
group=""

cleanup() {
    local rc=$?
    if [[ -n "$group" ]]; then
        kill -TERM -- "-$group" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 -- "-$group" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$group" 2>/dev/null || true
    fi
    if [[ "${KEEP_TMP:-}" == 1 ]]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "run-tests.sh: $*" >&2; exit 1; }

command -v node >/dev/null || die "node is required (>= 20)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || die "node >= 20 is required"
command -v setsid >/dev/null || die "setsid is required (util-linux)"

cd "$here"

# 1. Node dependencies, pinned by package-lock.json.
missing=0
for pkg in typescript @modelcontextprotocol/sdk @modelcontextprotocol/server @modelcontextprotocol/client @modelcontextprotocol/node express zod; do
    [[ -f "node_modules/$pkg/package.json" ]] || missing=1
done
if [[ $missing == 1 ]]; then
    echo "installing node dependencies (npm ci)..."
    npm ci --no-audit --no-fund --loglevel=error || die "npm ci failed"
fi

# 2. The package.
echo "building @mcp-pdp/pep (tsc)..."
rm -rf dist
node node_modules/typescript/bin/tsc -p tsconfig.json || die "tsc failed"

# 3. The PDP.
pdp_bin="${PDP_BIN:-}"
if [[ -z "$pdp_bin" ]]; then
    command -v go >/dev/null || die "go is required to build pdp (or set PDP_BIN)"
    echo "building pdp..."
    (cd "$root" && go build -o "$tmp/pdp" ./cmd/pdp) || die "go build ./cmd/pdp failed"
    pdp_bin="$tmp/pdp"
fi
[[ -x "$pdp_bin" ]] || die "PDP_BIN $pdp_bin is not an executable"

# 4. The tests, in their own process group. node:test's spec reporter ends with "ℹ pass N", "ℹ fail N".
set +e
PDP_BIN="$pdp_bin" TMPDIR="$tmp" setsid timeout --kill-after=5 110 \
    node --test --test-concurrency=1 --test-reporter=spec --test-timeout=60000 "$@" test/*.test.mjs >"$tmp/test.log" 2>&1 &
group=$!
wait "$group"
rc=$?
set -e
cat "$tmp/test.log"

count() { awk -v k="$1" '$1 == "ℹ" && $2 == k && $3 ~ /^[0-9]+$/ {s += $3} END {print s + 0}' "$tmp/test.log"; }
passed=$(count pass)
failed=$(count fail)
if [[ $rc -ne 0 && "$failed" == 0 ]]; then failed=1; fi
if [[ $rc -eq 0 && "$passed" == 0 ]]; then rc=1; failed=1; echo "run-tests.sh: no test ran" >&2; fi
echo "typescript: $passed passed, $failed failed"
exit $rc
