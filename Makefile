# rollbridge — build, test and measure.
GO      ?= go
VERSION ?= 0.2.0
LDFLAGS := -X main.version=$(VERSION)
BIN     := bin/rollbridge

.PHONY: build demo test lint fmt-check vet unit fuzz bench clean

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

unit:
	$(GO) test -race -count=1 ./...

## fuzz: a short seeded run of the config loader's fuzz target
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime 10s ./jsconfig

## bench: config loading in-process and `rollbridge validate` as a whole process
bench:
	$(GO) test -run '^$$' -bench . -benchtime 50x ./jsconfig ./cmd/rollbridge

clean:
	rm -rf bin
