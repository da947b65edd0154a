# mcp-pdp. The two commands a fresh machine needs: `make run` and `make test`.
GO      ?= go
PKGS    := ./...
BIN     := bin/pdp
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
FUZZTIME ?= 10s

.PHONY: run build test vet rego-test bench fuzz clean client-test

## run: the PDP on its embedded defaults (dev issuer, demo policy, embedded NATS) on 127.0.0.1:8181
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/pdp serve --dev

## build: bin/pdp
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pdp

## test: gofmt, go vet, Go tests (race detector), Rego tests via `pdp test`, a short fuzz pass,
## and the real-client step-up tests (official MCP TypeScript SDK; needs node >= 20 and npm)
test: vet
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) run ./cmd/pdp test policies test/policies
	$(MAKE) fuzz FUZZTIME=5000x
	$(MAKE) client-test

## client-test: an MCP client (official TypeScript SDK) steps up on the PDP's challenges
client-test:
	test/clients/run.sh

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool opa fmt --list --fail policies test/policies
	$(GO) run ./cmd/pdp check --strict policies

rego-test:
	$(GO) run ./cmd/pdp test -v --coverage policies test/policies

## bench: in-process benchmarks (decision, list filtering, token verification, audit)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./internal/...

## fuzz: each fuzz target for FUZZTIME (a duration, or a count such as 5000x: make test uses a
## count, as a duration's deadline can race the fuzzing coordinator and fail with a bare
## "context deadline exceeded" and no failing input; golang/go#75804)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzHeader$$' -fuzztime $(FUZZTIME) ./internal/stepup
	$(GO) test -run '^$$' -fuzz '^FuzzParseAuthorization$$' -fuzztime $(FUZZTIME) ./internal/token
	$(GO) test -run '^$$' -fuzz '^FuzzFilter$$' -fuzztime $(FUZZTIME) ./internal/listfilter
	$(GO) test -run '^$$' -fuzz '^FuzzParseFast$$' -fuzztime $(FUZZTIME) ./internal/listfilter
	$(GO) test -run '^$$' -fuzz '^FuzzWalk$$' -fuzztime $(FUZZTIME) ./internal/jsonfast
	$(GO) test -run '^$$' -fuzz '^FuzzSpoolSegment$$' -fuzztime $(FUZZTIME) ./internal/auditsink
	$(GO) test -run '^$$' -fuzz '^FuzzDecideRequest$$' -fuzztime $(FUZZTIME) ./internal/api
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFast$$' -fuzztime $(FUZZTIME) ./internal/api
	$(GO) test -run '^$$' -fuzz '^FuzzDecide$$' -fuzztime $(FUZZTIME) ./internal/core
	$(GO) test -run '^$$' -fuzz '^FuzzScopeClaims$$' -fuzztime $(FUZZTIME) ./internal/core
	$(GO) test -run '^$$' -fuzz '^FuzzParseMessageFast$$' -fuzztime $(FUZZTIME) ./internal/core

clean:
	rm -rf bin .pdp-data

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
