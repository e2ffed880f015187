# gateagent: `make` alone lists the targets.
.DEFAULT_GOAL := help

GO        ?= go
PKG       := gateagent
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BUILDDATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
# Evaluated once, so that every binary of one make run carries the same
# stamp and cross-check compares against the stamp cross used.
VERSION   := $(VERSION)
COMMIT    := $(COMMIT)
BUILDDATE := $(BUILDDATE)
LDFLAGS   := -s -w \
	-X $(PKG)/internal/version.Version=$(VERSION) \
	-X $(PKG)/internal/version.Commit=$(COMMIT) \
	-X $(PKG)/internal/version.BuildDate=$(BUILDDATE)
FUZZTIME  ?= 10s
# The largest release binary cross-check accepts, in MB (10^6 bytes).
CROSS_MAX_MB ?= 15

.PHONY: help demo build test unit test-arm64 fuzz bench cross cross-check check clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

demo: ## the walk-through: local issuer, gate on simulated hardware, pty scanner
	$(GO) run ./cmd/gateagent demo

build: ## static binaries for this machine in bin/ (gateagent, issuer)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gateagent ./cmd/gateagent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/issuer ./cmd/issuer

test: check fuzz unit ## everything CI runs: check, short fuzzing, race tests (last, so CI reads their results)

unit: ## the tests, with the race detector
	$(GO) test -race -count=1 ./...

test-arm64: ## the tests built for linux/arm64, run under qemu-aarch64-static (apt: qemu-user-static)
	GATEAGENT_TEST_EXEC=qemu-aarch64-static CGO_ENABLED=0 GOARCH=arm64 $(GO) test -count=1 -exec qemu-aarch64-static ./...

fuzz: ## each fuzz target for FUZZTIME (default 10s)
	$(GO) test -run '^$$' -fuzz '^FuzzParseToken$$' -fuzztime $(FUZZTIME) ./verify/
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./verify/
	$(GO) test -run '^$$' -fuzz '^FuzzExplain$$' -fuzztime $(FUZZTIME) ./verify/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./internal/base45/
	$(GO) test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) ./feed/
	$(GO) test -run '^$$' -fuzz '^FuzzLogPage$$' -fuzztime $(FUZZTIME) ./keysync/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./issuer/idcard/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeImage$$' -fuzztime $(FUZZTIME) ./qrcode/
	$(GO) test -run '^$$' -fuzz '^FuzzFramer$$' -fuzztime $(FUZZTIME) ./scanner/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./internal/conf/

bench: ## the benchmarks beside their floors, 1M records (several minutes)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./verify/ ./cache/
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x -count 3 -timeout 60m ./keysync/
	$(GO) test -run '^$$' -bench ScanToRelay -benchtime 2000x -count 3 ./agent/

cross: ## static, stripped release binaries in bin/: gateagent-linux-arm64, -armv7 (GOARM=7), -amd64
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gateagent-linux-arm64 ./cmd/gateagent
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gateagent-linux-armv7 ./cmd/gateagent
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gateagent-linux-amd64 ./cmd/gateagent

# cross-check: the ELF checks, then each binary's `version` run under qemu
# (natively for amd64 on an x86-64 machine) must say what make stamped.
cross-check: ## check cross's binaries: ELF machine, static, stripped, size <= CROSS_MAX_MB; `version` under qemu
	$(GO) run ./internal/cmd/elfcheck -max-mb $(CROSS_MAX_MB) \
		arm64=bin/gateagent-linux-arm64 arm=bin/gateagent-linux-armv7 amd64=bin/gateagent-linux-amd64
	@gover=$$($(GO) env GOVERSION); \
	runs="qemu-aarch64-static:bin/gateagent-linux-arm64:linux/arm64 qemu-arm-static:bin/gateagent-linux-armv7:linux/arm/v7"; \
	[ "$$(uname -m)" = x86_64 ] && runs="$$runs env:bin/gateagent-linux-amd64:linux/amd64"; \
	for r in $$runs; do \
		runner=$${r%%:*}; rest=$${r#*:}; bin=$${rest%%:*}; platform=$${rest#*:}; \
		out=$$($$runner $$bin version 2>&1) || { echo "cross-check: FAIL: $$runner $$bin version: $$out"; exit 1; }; \
		echo "$$runner $$bin version: $$out"; \
		case "$$out" in \
		"gateagent $(VERSION) ($(COMMIT), built "*", $$gover $$platform)") ;; \
		*) echo "cross-check: FAIL: $$bin does not carry this build's stamp: want gateagent $(VERSION) ($(COMMIT), built ..., $$gover $$platform)"; exit 1;; \
		esac; \
	done; \
	echo "cross-check: ok: static, stripped, at most $(CROSS_MAX_MB) MB, and each says gateagent $(VERSION) ($(COMMIT)) for its platform"

check: ## gofmt, go vet, go mod tidy leaves the tree clean, arm64 builds
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy
	@git diff --exit-code go.mod go.sum || { echo "go mod tidy changed go.mod/go.sum: commit the result"; exit 1; }
	CGO_ENABLED=0 GOARCH=arm64 $(GO) build ./...
	CGO_ENABLED=0 GOARCH=arm64 $(GO) vet ./...

clean: ## remove bin/
	rm -rf bin
