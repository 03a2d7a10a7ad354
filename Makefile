GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/kalcifer

.PHONY: run build test test-short lint deps clean proto

# Packages whose tests drive Proto.Actor's cluster code: the library has data races of its own there, so
# `make test` runs them without -race and every other package with it.
NORACE_PKGS := ./actors/... ./cluster/... ./e2e/...
RACE_PKGS    = $(filter-out $(shell $(GO) list $(NORACE_PKGS)),$(shell $(GO) list ./...))

## build: compile the kalcifer binary into bin/
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kalcifer

## run: build and serve on the embedded default (SQLite in ./data, http://localhost:4000)
run: build
	./$(BIN) serve

## test: the whole suite, installing and starting what it needs (PostgreSQL)
test: deps
	$(GO) test -race -count=1 -timeout 30m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 30m $(NORACE_PKGS)

## test-short: the quick loop
test-short:
	$(GO) test -race -short $(RACE_PKGS)
	$(GO) test -short $(NORACE_PKGS)

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

## proto: regenerate actors/actorpb from proto/*.proto (protoc from Debian; protoc-gen-go at the go.mod version)
proto:
	@command -v protoc >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq protobuf-compiler >/dev/null; } \
		|| { echo "protoc not found: install the protobuf-compiler package"; exit 1; }
	protoc --proto_path=proto --plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
		--go_out=. --go_opt=module=github.com/kalcifer/kalcifer proto/*.proto
