# rollbridge — build, test and measure.
GO      ?= go
VERSION ?= 0.2.0
LDFLAGS := -X main.version=$(VERSION)
BIN     := bin/rollbridge

.PHONY: build demo test lint fmt-check vet unit fuzz bench bench-go chaos soak clean

## build: the rollbridge binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rollbridge

## demo: a daemon on loopback, release v1, then v2 under traffic (0 failed requests)
demo: build
	$(GO) build -o bin/demo ./examples/demo
	./examples/demo/run.sh

## test: everything CI runs (gofmt, vet, race-enabled tests, a short fuzz run)
test: lint unit fuzz

## lint: gofmt check and go vet
lint: fmt-check vet

fmt-check:
	@files=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$files" ]; then echo "gofmt would change:"; echo "$$files"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags chaos,soak ./cmd/rollbridge

unit:
	$(GO) test -race -count=1 ./...

## fuzz: short seeded runs of the config loader's and the control protocol's fuzz targets
## (about 6-9 s each). Budgets are execution counts: with a duration, Go 1.26's fuzz
## coordinator can fail a run with "context deadline exceeded" at the end of the
## window although nothing was found (go.dev/issue/75804, fixed in Go 1.27).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime 1000x ./jsconfig
	$(GO) test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime 30000x ./engine/control

## bench: proxy overhead (direct, rollbridge, nginx, httputil), deploys under load,
## footprint and a takeover, as one table (docs/benchmarks.md; install wrk and nginx for the full table)
bench: build
	$(GO) build -o bin/rollbridge-bench ./cmd/rollbridge-bench
	./bin/rollbridge-bench -rollbridge $(BIN) all

## bench-go: the in-process Go benchmarks (config loading, validate, the proxy's request path)
bench-go:
	$(GO) test -run '^$$' -bench . -benchtime 50x ./jsconfig ./cmd/rollbridge ./proxy

## chaos: faults under load for CHAOS_DURATION (default 45s); not part of make test
chaos:
	$(GO) test -tags chaos -race -count=1 -run '^TestChaos$$' -timeout 10m -v ./cmd/rollbridge

## soak: 1000 deploys into one daemon; memory, goroutines and open files must not grow
soak:
	CGO_ENABLED=0 $(GO) test -tags soak -count=1 -run '^TestSoak$$' -timeout 20m -v ./cmd/rollbridge

clean:
	rm -rf bin
