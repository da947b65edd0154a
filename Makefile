# mcp-pdp. The two commands a fresh machine needs: `make run` and `make test`.
GO      ?= go
PKGS    := ./...
BIN     := bin/pdp
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
FUZZTIME ?= 10s

.PHONY: run build test vet rego-test bench fuzz fuzz-smoke fuzz-targets-check bundle clean client-test

## run: the PDP on its embedded defaults (dev issuer, demo policy, embedded NATS) on 127.0.0.1:8181
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/pdp serve --dev

## build: bin/pdp
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pdp

# Packaging (release, image, release-test; tested by test/packaging). Static: CGO_ENABLED=0 (the
# linux binaries need no libc, no loader; darwin ones link libSystem, as every macOS program must).
.PHONY: release image release-test
DIST            ?= dist
RELEASE_TARGETS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
RELEASE_LDFLAGS := -s -w $(LDFLAGS)
RELEASE_BUILD    = CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(RELEASE_LDFLAGS)"

## release: static, stripped binaries for RELEASE_TARGETS (linux and darwin, amd64 and arm64) as
## dist/pdp-VERSION-OS-ARCH, and dist/SHA256SUMS (check: cd dist && sha256sum -c SHA256SUMS)
release:
	@set -e; mkdir -p $(DIST); rm -f $(DIST)/pdp-* $(DIST)/SHA256SUMS; names=; \
	for t in $(RELEASE_TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; name=pdp-$(VERSION)-$$os-$$arch; \
		echo "release $(DIST)/$$name"; \
		GOOS=$$os GOARCH=$$arch $(RELEASE_BUILD) -o $(DIST)/$$name ./cmd/pdp; \
		names="$$names $$name"; \
	done; \
	cd $(DIST); \
	if command -v sha256sum >/dev/null 2>&1; then sha256sum $$names; else shasum -a 256 $$names; fi > SHA256SUMS.tmp; \
	mv SHA256SUMS.tmp SHA256SUMS; echo "release $(DIST)/SHA256SUMS"

## image: the container image mcp-pdp:VERSION (Containerfile: FROM scratch, user 65532, CA
## certificates, the static linux binary for IMAGE_ARCH, default the host's), built with podman or
## else buildah; IMAGE_BUILDER_FLAGS are their global flags (e.g. --storage-driver vfs)
IMAGE               ?= mcp-pdp:$(VERSION)
IMAGE_ARCH          ?= $(shell $(GO) env GOARCH)
IMAGE_CONTEXT       ?= bin/image-context
IMAGE_BUILDER       ?= $(shell command -v podman 2>/dev/null || command -v buildah 2>/dev/null)
IMAGE_BUILDER_FLAGS ?=
CA_BUNDLE           ?= /etc/ssl/certs/ca-certificates.crt
# --platform only for another architecture than the host's (it makes the builders warn of unused
# TARGET* build arguments); FROM scratch without RUN needs no emulation for it. --layers=false:
# podman 4's layer cache ignores the platform (an amd64 build reused the steps of an arm64 one and
# came out labelled arm64); buildah bud does not cache by default. The build takes about a second.
IMAGE_PLATFORM       = $(if $(filter-out $(shell $(GO) env GOHOSTARCH),$(IMAGE_ARCH)),--platform linux/$(IMAGE_ARCH))
image:
	@[ -n "$(IMAGE_BUILDER)" ] || { echo "make image: neither podman nor buildah is installed; install one" \
		"(Debian/Ubuntu: apt-get install podman, or buildah; Fedora/RHEL: dnf install podman; macOS: brew install podman)," \
		"or name it with IMAGE_BUILDER=path" >&2; exit 1; }
	@[ -s "$(CA_BUNDLE)" ] || { echo "make image: no CA bundle at $(CA_BUNDLE); install ca-certificates" \
		"(apt-get install ca-certificates) or name a PEM bundle with CA_BUNDLE=path" >&2; exit 1; }
	rm -rf $(IMAGE_CONTEXT)
	mkdir -p $(IMAGE_CONTEXT)/skel/tmp $(IMAGE_CONTEXT)/skel/var/lib $(IMAGE_CONTEXT)/state/pdp
	chmod 1777 $(IMAGE_CONTEXT)/skel/tmp && chmod 0755 $(IMAGE_CONTEXT)/skel/var $(IMAGE_CONTEXT)/skel/var/lib \
		&& chmod 0700 $(IMAGE_CONTEXT)/state/pdp
	GOOS=linux GOARCH=$(IMAGE_ARCH) $(RELEASE_BUILD) -o $(IMAGE_CONTEXT)/pdp ./cmd/pdp
	cp $(CA_BUNDLE) $(IMAGE_CONTEXT)/ca-certificates.crt
	chmod 0755 $(IMAGE_CONTEXT)/pdp && chmod 0644 $(IMAGE_CONTEXT)/ca-certificates.crt
	@case "$$(basename $(IMAGE_BUILDER))" in podman*) sub=build;; *) sub=bud;; esac; set -x; \
	$(IMAGE_BUILDER) $(IMAGE_BUILDER_FLAGS) $$sub --layers=false $(IMAGE_PLATFORM) --build-arg VERSION=$(VERSION) \
		-f Containerfile -t $(IMAGE) $(IMAGE_CONTEXT)
	@echo "image $(IMAGE); run: podman run -p 8181:8181 -v ./pdp.yaml:/etc/pdp/pdp.yaml:ro -v pdp-data:/var/lib/pdp $(IMAGE)"

## release-test: make release for all RELEASE_TARGETS in a temporary directory, checked (names, static,
## stripped, build settings, SHA256SUMS, --version); make test checks the host's target alone
release-test:
	PDP_PACKAGING_TEST=1 PDP_RELEASE_ALL=1 $(GO) test -count=1 -timeout 30m -run '^TestRelease$$' -v ./test/packaging

## test: gofmt, go vet, Go tests (race detector), Rego tests via `pdp test`, a short fuzz pass
## (fuzz-smoke), and the real-client step-up tests (official MCP TypeScript SDK; needs node >= 20 and npm)
## and the packaging (test/packaging: make release for the host, make image with podman or buildah, systemd unit)
test: vet
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) test -count=1 -run '^TestGatewayIdleStreams$$' ./internal/gateway # memory: without the race detector
	$(GO) run ./cmd/pdp test policies test/policies
	$(MAKE) fuzz-smoke
	$(MAKE) client-test
	PDP_PACKAGING_TEST=1 $(GO) test -count=1 -timeout 15m ./test/packaging # make release (host target), make image, systemd unit

## client-test: real MCP clients (official TypeScript SDK, inspector-cli) step up on the PDP's challenges
## and through the gateway; the TypeScript PEP library (clients/typescript) against both SDK lines; the
## TypeScript example; the parity table (Go middleware, TypeScript middleware and gateway answer alike);
## introspection and DPoP against a real authorization server (oidc-provider, test/authz)
client-test:
	$(RELEASE_BUILD) -o bin/pdp-client-test ./cmd/pdp # as a release is built: test/packaging then reuses the compiled packages
	PDP_BIN=$(CURDIR)/bin/pdp-client-test test/clients/run.sh
	PDP_BIN=$(CURDIR)/bin/pdp-client-test bash clients/typescript/run-tests.sh
	PDP_BIN=$(CURDIR)/bin/pdp-client-test bash examples/typescript/run-test.sh
	PDP_BIN=$(CURDIR)/bin/pdp-client-test bash test/parity/run.sh
	PDP_BIN=$(CURDIR)/bin/pdp-client-test bash test/authz/run.sh

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run ./cmd/pdp fmt --list --fail policies test/policies
	$(GO) run ./cmd/pdp check --strict policies

rego-test:
	$(GO) run ./cmd/pdp test -v --coverage policies test/policies

## bench: in-process benchmarks (decision, list filtering, token verification, audit)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./internal/...

## bundle: the default policy (policies/) as the OPA bundle bundles/mcp-pdp.tar.gz (git-ignored),
## revision = VERSION; signed when BUNDLE_SIGNING_KEY names a private key (make bundle
## BUNDLE_SIGNING_KEY=keys/policy-signing.pem [BUNDLE_SIGNING_ALG=ES256]). See bundles/README.md.
BUNDLE             ?= bundles/mcp-pdp.tar.gz
BUNDLE_SIGNING_KEY ?=
BUNDLE_SIGNING_ALG ?= RS256
BUNDLE_SIGN         = $(if $(BUNDLE_SIGNING_KEY),--signing-key $(BUNDLE_SIGNING_KEY) --signing-alg $(BUNDLE_SIGNING_ALG))
bundle:
	$(GO) run ./cmd/pdp bundle build policies -o $(BUNDLE) --revision $(VERSION) $(BUNDLE_SIGN)

# FUZZ_TARGETS: every fuzz target, as <package directory>:<name>. A new target is one more line
# here; fuzz-targets-check (run by fuzz-smoke) fails when a Fuzz function of the tree is missing.
FUZZ_TARGETS := \
	internal/api:FuzzDecideRequest \
	internal/api:FuzzDecodeFast \
	internal/assertion:FuzzAppendString \
	internal/auditsink:FuzzAppendEvent \
	internal/authzen:FuzzEvaluate \
	internal/core:FuzzDecide \
	internal/core:FuzzParseMessageFast \
	internal/core:FuzzScopeClaims \
	internal/decision:FuzzCacheEquivalence \
	internal/dpop:FuzzNormalizeHTU \
	internal/dpop:FuzzVerify \
	internal/jsonfast:FuzzWalk \
	internal/listfilter:FuzzFilter \
	internal/listfilter:FuzzParseFast \
	internal/quota:FuzzParseCounterAck \
	internal/spool:FuzzSegment \
	internal/stepup:FuzzHeader \
	internal/token:FuzzParseAuthorization \
	internal/token:FuzzReadUnverified \
	pep:FuzzScanMessage
FUZZ_PKGS := $(sort $(foreach t,$(FUZZ_TARGETS),$(firstword $(subst :, ,$(t)))))

## fuzz: coverage-guided fuzzing of each target for FUZZTIME (a duration, or a count such as
## 5000x: a duration's deadline can race the fuzzing coordinator and fail with a bare "context
## deadline exceeded" and no failing input; golang/go#75804). Failing inputs land in the
## package's testdata/fuzz/, where plain `go test` runs them from then on.
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$pkg; \
	done

# fuzz-smoke: the short fuzz pass of `make test`. Every target runs its seeds, its committed
# corpus (testdata/fuzz) and FUZZ_SMOKE_EXECS mutated inputs, in the plain (uninstrumented) test
# binary of its package: one `go test -c` for all fuzz packages, from packages `make vet` has
# already compiled.
#
# Why not `make fuzz FUZZTIME=5000x`, as make test ran before: `go test -fuzz` compiles every
# package of the test binary, the standard library and OPA included, once more with coverage
# instrumentation (a third full build, after the plain and the -race one), and links one
# binary per target. Measured on the shared 2-core machine (2026-12): with an empty GOCACHE
# the first instrumented target took 245 s, each further OPA-sized one 8-11 s; fuzz-smoke
# takes about 95 s for all 13 targets. The price: without instrumentation the mutator has no
# coverage guidance (Go warns; the warning is shown only on failure) and mutates the seeds and
# corpus at random. For 5000 executions guidance matters little; the long, guided search is
# `make fuzz`. A failing input is written to the package's testdata/fuzz/, as with -fuzz.
FUZZ_SMOKE_EXECS ?= 5000
FUZZ_BIN         := bin/fuzz
fuzz-smoke: fuzz-targets-check
	@rm -rf $(FUZZ_BIN) && mkdir -p $(FUZZ_BIN)/cache
	$(GO) test -c -o $(FUZZ_BIN)/ $(addprefix ./,$(FUZZ_PKGS))
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		bin=$(CURDIR)/$(FUZZ_BIN)/$$(basename $$pkg).test; \
		if out=$$(cd $$pkg && $$bin -test.run '^$$' -test.fuzz "^$$name\$$" -test.fuzztime $(FUZZ_SMOKE_EXECS)x \
			-test.fuzzcachedir $(CURDIR)/$(FUZZ_BIN)/cache 2>&1); then \
			echo "ok   $$name ($$pkg): seeds, corpus and $(FUZZ_SMOKE_EXECS) mutated inputs"; \
		else echo "$$out"; echo "FAIL $$name ($$pkg)"; exit 1; fi; \
	done

# fuzz-targets-check: FUZZ_TARGETS names every Fuzz function of the tree's tests.
fuzz-targets-check:
	@found=$$(grep -r --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*' . | grep -v '^\./_scratch/' \
		| sed 's|^\./\(.*\)/[^/]*_test\.go:func |\1:|' | sort -u); \
	listed=$$(printf '%s\n' $(FUZZ_TARGETS) | sort -u); \
	missing=$$(printf '%s\n' "$$found" | grep -vxF -e "$$listed" || true); \
	stale=$$(printf '%s\n' "$$listed" | grep -vxF -e "$$found" || true); \
	if [ -n "$$missing$$stale" ]; then \
		[ -z "$$missing" ] || printf 'Makefile FUZZ_TARGETS lacks:\n%s\n' "$$missing"; \
		[ -z "$$stale" ] || printf 'Makefile FUZZ_TARGETS names targets that do not exist:\n%s\n' "$$stale"; \
		exit 1; fi

clean:
	rm -rf dist
	rm -rf bin .pdp-data $(BUNDLE)

## loadbench: mcp-pdp vs OPA's REST server vs a plain net/http floor, measured side by side
## in one run on this machine (~15 min; first run also mints 100k RS256 tokens, ~1 min).
## Results: printed and written to bench/results/<date>.md (+ .json). See docs/performance.md.
LOADBENCH_FLAGS ?=
.PHONY: loadbench loadbench-quick loadbench-profile
loadbench:
	$(GO) run ./bench/run $(LOADBENCH_FLAGS)

## loadbench-quick: smoke run of the same harness: short windows, one run, small series (~3 min)
loadbench-quick:
	$(GO) run ./bench/run -quick $(LOADBENCH_FLAGS)

## loadbench-profile: CPU profiles of mcp-pdp's decision path under load (bench/pdpprof)
loadbench-profile:
	$(GO) run ./bench/run -what profile $(LOADBENCH_FLAGS)

## soak: the built PDP under fixed-rate mixed traffic (valid, anonymous, hostile, unauthenticated, over-rate)
## for SOAK_DURATION after a warm-up; reports p50/p99, errors by kind, RSS/heap/goroutines at start and end,
## and fails if answers are wrong or memory or goroutines grow. Minutes; not part of `make test`.
SOAK_DURATION ?= 3m
SOAK_FLAGS ?=
.PHONY: soak
soak: build
	$(GO) run ./bench/soak -pdp $(BIN) -duration $(SOAK_DURATION) $(SOAK_FLAGS)
