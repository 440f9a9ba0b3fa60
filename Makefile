# rollbridge — build, test and measure.
GO      ?= go
VERSION ?= 0.2.0
LDFLAGS := -X main.version=$(VERSION)
BIN     ?= bin/rollbridge

# Install locations (make install, make uninstall). DESTDIR stages the
# files under another root (packaging, tests); the paths the installed
# files name (the units' ExecStart=) never contain it.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
UNITDIR     ?= $(PREFIX)/lib/systemd/system
UNITS       := rollbridge.service rollbridge@.service

.PHONY: build demo test lint fmt-check vet unit fuzz bench bench-go chaos soak clean install uninstall

## build: the rollbridge binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/rollbridge

# install builds the binary only when it is missing, so that
# `make && sudo make install` does not need Go in root's PATH.
$(BIN):
	$(MAKE) build

## install: the binary, its bash and zsh completions and the example systemd units
## (docs/deploy-recipes.md#install); PREFIX (default /usr/local) and DESTDIR are honoured
install: $(BIN)
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(BASHCOMPDIR)" "$(DESTDIR)$(ZSHCOMPDIR)" "$(DESTDIR)$(UNITDIR)"
	install -m 0755 "$(BIN)" "$(DESTDIR)$(BINDIR)/rollbridge"
	"$(BIN)" completion bash >"$(DESTDIR)$(BASHCOMPDIR)/rollbridge.tmp"
	install -m 0644 "$(DESTDIR)$(BASHCOMPDIR)/rollbridge.tmp" "$(DESTDIR)$(BASHCOMPDIR)/rollbridge"
	rm -f "$(DESTDIR)$(BASHCOMPDIR)/rollbridge.tmp"
	"$(BIN)" completion zsh >"$(DESTDIR)$(ZSHCOMPDIR)/_rollbridge.tmp"
	install -m 0644 "$(DESTDIR)$(ZSHCOMPDIR)/_rollbridge.tmp" "$(DESTDIR)$(ZSHCOMPDIR)/_rollbridge"
	rm -f "$(DESTDIR)$(ZSHCOMPDIR)/_rollbridge.tmp"
	for unit in $(UNITS); do \
		sed 's|/usr/local/bin/rollbridge|$(BINDIR)/rollbridge|g' "examples/$$unit" >"$(DESTDIR)$(UNITDIR)/$$unit.tmp" && \
		install -m 0644 "$(DESTDIR)$(UNITDIR)/$$unit.tmp" "$(DESTDIR)$(UNITDIR)/$$unit" && \
		rm -f "$(DESTDIR)$(UNITDIR)/$$unit.tmp" || exit 1; \
	done

## uninstall: remove exactly the files install put (directories stay: others share them)
uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/rollbridge" "$(DESTDIR)$(BASHCOMPDIR)/rollbridge" "$(DESTDIR)$(ZSHCOMPDIR)/_rollbridge"
	for unit in $(UNITS); do rm -f "$(DESTDIR)$(UNITDIR)/$$unit"; done

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
	$(GO) vet -tags chaos,soak,nginxcrash ./cmd/rollbridge

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
## footprint, takeovers, deploys that hold traffic and daemon crashes under systemd's fd store, as one table (docs/benchmarks.md; install wrk and nginx for the full table)
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
