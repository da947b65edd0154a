#!/usr/bin/env bash
# Smoke tests of the test authorization server (oidc-provider, provider.mjs) that
# mcp-pdp's introspection and DPoP tests use (issue #14): no PDP, just the server.
#
# Installs the pinned node dependencies (package-lock.json) when one is missing,
# then runs smoke.test.mjs with node:test. The tests start their own servers on
# free loopback ports (port 0) and stop them; serve.mjs runs as a child process.
#
# Usage: test/authz/run.sh [extra node --test flags]
# Env:   KEEP_TMP=1  keep the temporary directory (the test output)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
LIB_NAME=run.sh
LIB_SUMMARY="authz: 0 passed, 1 failed"
# shellcheck source=../lib.sh
source "$root/test/lib.sh"
lib_init pdp-authz-test
need_node
# oidc-provider 9 uses URL.parse and crypto.hash (node >= 20.19, 22.12).
node -e 'process.exit(typeof URL.parse === "function" && typeof require("node:crypto").hash === "function" ? 0 : 1)' ||
    die "node >= 20.19 is required (oidc-provider 9)"

npm_deps "$here" oidc-provider oauth4webapi jose

# node:test's spec reporter ends with "ℹ pass N", "ℹ fail N", ...
set +e
(cd "$here" && timeout 120 node --test --test-reporter=spec --test-timeout=30000 "$@" smoke.test.mjs) 2>&1 | tee "$tmp/test.out"
rc=${PIPESTATUS[0]}
set -e

passed=$(count_tests pass "$tmp/test.out")
failed=$(count_tests fail "$tmp/test.out")
if [[ $rc -ne 0 && "$failed" == 0 ]]; then failed=1; fi
# The closing line, in the plain form CI reads.
echo "authz: $passed passed, $failed failed"
exit $rc
