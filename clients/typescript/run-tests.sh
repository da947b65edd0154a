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
LIB_NAME=run-tests.sh
# shellcheck source=../../test/lib.sh
source "$root/test/lib.sh"
lib_init pdp-ts-run
need_node
cd "$here"

# 1. Node dependencies, pinned by package-lock.json.
npm_deps "$here" typescript @modelcontextprotocol/sdk @modelcontextprotocol/server @modelcontextprotocol/client @modelcontextprotocol/node express zod

# 2. The package.
echo "building @mcp-pdp/pep (tsc)..."
rm -rf dist
node node_modules/typescript/bin/tsc -p tsconfig.json || die "tsc failed"

# 3. The PDP.
pdp_binary

# 4. The tests, in their own process group. node:test's spec reporter ends with "ℹ pass N", "ℹ fail N".
rc=0
PDP_BIN="$pdp_bin" TMPDIR="$tmp" run_group test.out timeout --kill-after=5 110 \
    node --test --test-concurrency=1 --test-reporter=spec --test-timeout=60000 "$@" test/*.test.mjs || rc=$?
cat "$tmp/test.out"

passed=$(count_tests pass "$tmp/test.out")
failed=$(count_tests fail "$tmp/test.out")
if [[ $rc -ne 0 && "$failed" == 0 ]]; then failed=1; fi
if [[ $rc -eq 0 && "$passed" == 0 ]]; then rc=1; failed=1; echo "run-tests.sh: no test ran" >&2; fi
echo "typescript: $passed passed, $failed failed"
exit $rc
