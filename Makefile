GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/kalcifer

.PHONY: run build test test-short lint deps clean

## build: compile the kalcifer binary into bin/
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kalcifer

## run: build and serve on the embedded default (SQLite in ./data, http://localhost:4000)
run: build
	./$(BIN) serve

## test: the whole suite, installing and starting what it needs (PostgreSQL)
test: deps
	$(GO) test -race -count=1 -timeout 30m ./...

## test-short: the quick loop
test-short:
	$(GO) test -race -short ./...

## lint: gofmt, go vet and staticcheck
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

## deps: install the system packages the tests use (Debian), if missing
deps:
	scripts/test-deps.sh

clean:
	rm -rf bin
