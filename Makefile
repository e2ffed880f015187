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
FUZZTIME  ?=
# The largest release binary cross-check accepts, in MB (10^6 bytes).
CROSS_MAX_MB ?= 15

.PHONY: help demo build test unit test-arm64 fuzz bench cross cross-check check clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

demo: ## the walk-through: local issuer, gate on simulated hardware, pty scanner
	$(GO) run ./cmd/gatedemo

build: ## static binaries for this machine in bin/ (gateagent, issuer)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gateagent ./cmd/gateagent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/issuer ./cmd/issuer

test: check fuzz unit ## everything CI runs: check, short fuzzing, race tests (last, so CI reads their results)

unit: ## the tests, with the race detector
	$(GO) test -race -count=1 ./...

test-arm64: ## the tests built for linux/arm64, run under qemu-aarch64-static (apt: qemu-user-static)
	GATEAGENT_TEST_EXEC=qemu-aarch64-static CGO_ENABLED=0 GOARCH=arm64 $(GO) test -count=1 -exec qemu-aarch64-static ./...

# Each fuzz target with its budget in executions (about 10 s each on a
# 2-core machine). A count, not a duration: with -fuzztime 10s, Go's fuzz
# coordinator can report its own deadline as a failure ("context deadline
# exceeded" with no failing input, go.dev/issue/75804, fixed in Go 1.27),
# which failed CI once. `make fuzz FUZZTIME=5m` runs every target for a
# duration instead; a real finding always prints "Failing input written to".
FUZZ_TARGETS := \
	verify:FuzzParseToken:300000 \
	verify:FuzzVerify:300000 \
	verify:FuzzExplain:300000 \
	internal/base45:FuzzDecode:500000 \
	feed:FuzzOpen:500000 \
	keysync:FuzzLogPage:20000 \
	issuer/idcard:FuzzParse:500000 \
	qrcode:FuzzDecodeImage:200000 \
	scanner:FuzzFramer:200000 \
	config:FuzzParse:100000 \
	cache:FuzzOpenDamaged:1500

fuzz: ## each fuzz target for its execution budget (FUZZTIME=5m: each for that long)
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$${rest#*:}x; \
		[ -z "$(FUZZTIME)" ] || budget=$(FUZZTIME); \
		echo "$(GO) test -run '^\$$' -fuzz '^$$name\$$' -fuzztime $$budget ./$$pkg/"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $$budget ./$$pkg/; \
	done

bench: ## the benchmarks beside their floors, 1M and 5M records, a simulated day of churn (most of an hour)
	$(GO) test -run '^$$' -bench . -skip ColdStart -benchmem -count 5 ./verify/ ./cache/
	$(GO) test -run '^$$' -bench ColdStart -benchtime 10x -timeout 30m ./cache/
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x -count 3 -timeout 60m ./keysync/
	$(GO) test -run '^$$' -bench ScanToRelay -benchtime 2000x -count 3 -timeout 60m ./agent/
	$(GO) test -run '^$$' -bench ChurnDay -benchtime 1x -timeout 60m ./internal/churn/

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

check: ## gofmt, go vet, go mod tidy leaves the tree clean, arm64 builds, the import rules (internal/layout)
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy
	@git diff --exit-code go.mod go.sum || { echo "go mod tidy changed go.mod/go.sum: commit the result"; exit 1; }
	CGO_ENABLED=0 GOARCH=arm64 $(GO) build ./...
	CGO_ENABLED=0 GOARCH=arm64 $(GO) vet ./...
	$(GO) test -count=1 ./internal/layout

clean: ## remove bin/
	rm -rf bin
