#!/usr/bin/env bash
# Tests against the test authorization server (oidc-provider, provider.mjs) of
# mcp-pdp's introspection and DPoP support (issue #14):
#   smoke.test.mjs  the server itself, no PDP
#   pdp.test.mjs    the PDP end to end: `pdp serve` introspecting the server's
#                   opaque tokens (client_secret_basic/post, private_key_jwt, RFC
#                   9701), verifying its JWTs, checking DPoP proofs
#
# Installs the pinned node dependencies (package-lock.json) when one is missing,
# builds pdp unless PDP_BIN names one, then runs both files with node:test (one
# run, one summary). The tests start their own servers on free loopback ports
# and stop them; the run is a process group of its own, ended on exit, so
# nothing it starts (serve.mjs, pdp serve) outlives it.
#
# Usage: test/authz/run.sh [extra node --test flags]
# Env:   KEEP_TMP=1  keep the temporary directories (the test output; pdp.test.mjs's
#                    config, log and data_dir)
#        PDP_BIN     the pdp binary (default: built into the temporary directory)
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
pdp_binary
export PDP_BIN="$pdp_bin"

# node:test's spec reporter ends with "ℹ pass N", "ℹ fail N", ... (for both files).
# TMPDIR: the tests' own temporary directories go under $tmp, removed on exit.
cd "$here"
rc=0
run_group test.out env TMPDIR="$tmp" timeout 180 node --test --test-reporter=spec --test-timeout=30000 "$@" smoke.test.mjs pdp.test.mjs || rc=$?
cat "$tmp/test.out"

passed=$(count_tests pass "$tmp/test.out")
failed=$(count_tests fail "$tmp/test.out")
if [[ $rc -ne 0 && "$failed" == 0 ]]; then failed=1; fi
# The closing line, in the plain form CI reads.
echo "authz: $passed passed, $failed failed"
exit $rc
