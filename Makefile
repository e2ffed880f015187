# gateagent: `make` alone lists the targets.
.DEFAULT_GOAL := help

GO        ?= go
PKG       := gateagent
# The commit's time (reproducible-builds.org's SOURCE_DATE_EPOCH): the
# build date stamped into the binaries and the time of every file in the
# packages, so that two builds of one commit are the same bytes. Outside a
# git checkout, the time of the build.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BUILDDATE ?= $(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ)
# Evaluated once, so that every binary of one make run carries the same
# stamp and cross-check compares against the stamp cross used.
SOURCE_DATE_EPOCH := $(SOURCE_DATE_EPOCH)
VERSION   := $(VERSION)
COMMIT    := $(COMMIT)
BUILDDATE := $(BUILDDATE)
export SOURCE_DATE_EPOCH
LDFLAGS   := -s -w \
	-X $(PKG)/internal/version.Version=$(VERSION) \
	-X $(PKG)/internal/version.Commit=$(COMMIT) \
	-X $(PKG)/internal/version.BuildDate=$(BUILDDATE)
# Static, without the checkout's path (-trimpath) or git state
# (-buildvcs=false: the ldflags stamp version, commit and date): the same
# commit gives the same bytes in any directory, on any machine with this Go.
GOBUILD   := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)'
# The release binary of each Debian architecture. Phony: go decides what to
# rebuild, from its cache.
RELEASE_arm64 := bin/gateagent-linux-arm64
RELEASE_armhf := bin/gateagent-linux-armv7
RELEASE_amd64 := bin/gateagent-linux-amd64
RELEASE_BINS  := $(RELEASE_arm64) $(RELEASE_armhf) $(RELEASE_amd64)
FUZZTIME  ?=
# The largest release binary cross-check accepts, in MB (10^6 bytes).
# 16: memberlist (station peers) added 2.0 MB, bringing amd64 to 15.1 MB;
# the boards' arm64 and armv7 binaries are 14.4 and 14.8 MB.
CROSS_MAX_MB ?= 16

.PHONY: help demo build test unit test-arm64 fuzz bench cross cross-check deb deb-check repro-check install check clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

demo: ## the walk-through: local issuer, gate on simulated hardware, pty scanner
	$(GO) run ./cmd/gatedemo

build: ## static binaries for this machine in bin/ (gateagent, issuer)
	$(GOBUILD) -o bin/gateagent ./cmd/gateagent
	$(GOBUILD) -o bin/issuer ./cmd/issuer

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
	feed:FuzzOpen:200000 \
	keysync:FuzzLogPage:20000 \
	issuer/idcard:FuzzParse:500000 \
	qrcode:FuzzDecodeImage:200000 \
	scanner:FuzzFramer:200000 \
	config:FuzzParse:100000 \
	cache:FuzzOpenDamaged:1500 \
	station:FuzzDecode:300000 \
	cache:FuzzSealedGroup:200000 \
	internal/seglog:FuzzOpen:200000 \
	wear:FuzzParseProcIO:300000

fuzz: ## each fuzz target for its execution budget (FUZZTIME=5m: each for that long)
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$${rest#*:}x; \
		[ -z "$(FUZZTIME)" ] || budget=$(FUZZTIME); \
		echo "$(GO) test -run '^\$$' -fuzz '^$$name\$$' -fuzztime $$budget ./$$pkg/"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $$budget ./$$pkg/; \
	done

bench: ## the benchmarks beside their floors, 1M and 5M records, a simulated day of churn (most of an hour)
	$(GO) test -run '^$$' -bench . -skip ColdStart -benchmem -count 5 ./verify/ ./cache/ ./internal/seglog/
	$(GO) test -run '^$$' -bench ColdStart -benchtime 10x -timeout 30m ./cache/
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x -count 3 -timeout 60m ./keysync/
	$(GO) test -run '^$$' -bench ScanToRelay -benchtime 2000x -count 3 -timeout 60m ./agent/
	$(GO) test -run '^$$' -bench . -benchtime 2000x -count 5 ./station/
	$(GO) test -run '^$$' -bench ChurnDay -benchtime 1x -timeout 60m ./internal/churn/

cross: $(RELEASE_BINS) ## static, stripped release binaries in bin/: gateagent-linux-arm64, -armv7 (GOARM=7), -amd64

.PHONY: $(RELEASE_BINS)
bin/gateagent-linux-arm64:
	GOOS=linux GOARCH=arm64 GOARM64=v8.0 $(GOBUILD) -o $@ ./cmd/gateagent
bin/gateagent-linux-armv7:
	GOOS=linux GOARCH=arm GOARM=7 $(GOBUILD) -o $@ ./cmd/gateagent
bin/gateagent-linux-amd64:
	GOOS=linux GOARCH=amd64 GOAMD64=v1 $(GOBUILD) -o $@ ./cmd/gateagent

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

# The Debian version of VERSION: v1.2.3 -> 1.2.3; v1.2.3-4-gabc1234 (4
# commits after the tag) -> 1.2.3+4.gabc1234; v1.2.3-rc.1 -> 1.2.3~rc.1
# (before 1.2.3); untagged abc1234 -> 0~20261123100000.abc1234 (by the
# commit's time, before any tag); -dirty -> +dirty.
DEB_VERSION ?= $(shell v='$(VERSION)'; case "$$v" in \
	(v[0-9]*) v=$$(echo "$$v" | sed -e 's/^v//' -e 's/-\([0-9][0-9]*\)-g\([0-9a-f][0-9a-f]*\)/+\1.g\2/');; \
	(*) v="0~$$(date -u -d @$(SOURCE_DATE_EPOCH) +%Y%m%d%H%M%S).$$v";; esac; \
	echo "$$v" | sed -e 's/-dirty$$/+dirty/' -e 's/-/~/g')
DEB_VERSION := $(DEB_VERSION)
DEB_ARCHES  := arm64 armhf amd64
DEB_DIR     := bin/deb
DEB_MAINTAINER := $(shell sed -n 's/^maintainer: //p' packaging/nfpm.yaml)
# The packager: nfpm at the version go.mod's tool directive pins.
NFPM        ?= $(GO) tool nfpm

deb: $(RELEASE_BINS) ## Debian packages in bin/: gateagent_VERSION_{arm64,armhf,amd64}.deb (nfpm; reproducible)
	@mkdir -p $(DEB_DIR) && rm -f bin/gateagent_*.deb
	@printf 'gateagent (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- %s  %s\n' \
		'$(DEB_VERSION)' '$(COMMIT)' '$(DEB_MAINTAINER)' "$$(LC_ALL=C date -u -R -d @$(SOURCE_DATE_EPOCH))" \
		| gzip -n -9 >$(DEB_DIR)/changelog.gz
	@gzip -n -9 <packaging/gateagent.8 >$(DEB_DIR)/gateagent.8.gz
	@set -e; for a in $(DEB_ARCHES); do \
		case $$a in (arm64) b=$(RELEASE_arm64);; (armhf) b=$(RELEASE_armhf);; (amd64) b=$(RELEASE_amd64);; esac; \
		echo "$(NFPM) package --packager deb: $$a from $$b"; \
		DEB_ARCH=$$a DEB_BINARY=$$b DEB_VERSION='$(DEB_VERSION)' DEB_CHANGELOG=$(DEB_DIR)/changelog.gz DEB_MAN=$(DEB_DIR)/gateagent.8.gz \
			$(NFPM) package --config packaging/nfpm.yaml --packager deb --target bin/ >/dev/null; \
	done
	@ls -l bin/gateagent_*.deb

deb-version:
	@echo '$(DEB_VERSION)'

# deb-check: on a Debian machine, as root. It installs the package for real
# (and removes it again): run it on a build or CI machine, not on a gate.
deb-check: deb ## install the amd64 package here, check files, user, unit, lintian; remove and purge it (root)
	VERSION='$(VERSION)' COMMIT='$(COMMIT)' BUILDDATE='$(BUILDDATE)' .ci/deb-check bin/gateagent_$(DEB_VERSION)_amd64.deb

repro-check: ## build this commit's binaries and packages twice, apart, and compare them byte for byte (REPRO_COLD=1: the second from an empty Go cache)
	REPRO_COLD='$(REPRO_COLD)' .ci/repro-check

# make install: the files the package installs, for a board without dpkg
# (e.g. make install DESTDIR=/tmp/gate INSTALL_ARCH=arm64, then copy the
# tree over). An existing config is kept. It runs none of the package's
# scripts: the README's install section lists what to run on the board.
DESTDIR      ?=
INSTALL_ARCH ?= $(patsubst arm,armhf,$(shell $(GO) env GOARCH))
install: $(RELEASE_$(INSTALL_ARCH)) ## the package's files under DESTDIR, for boards without dpkg (INSTALL_ARCH=arm64|armhf|amd64)
	@[ -n "$(RELEASE_$(INSTALL_ARCH))" ] || { echo "make install: INSTALL_ARCH=$(INSTALL_ARCH): want arm64, armhf or amd64"; exit 2; }
	@set -e; umask 022; d='$(DESTDIR)'; set -x; \
	install -D -m 0755 $(RELEASE_$(INSTALL_ARCH)) $$d/usr/bin/gateagent; \
	install -D -m 0644 configs/gateagent.service $$d/lib/systemd/system/gateagent.service; \
	install -D -m 0644 configs/99-gateagent.rules $$d/lib/udev/rules.d/99-gateagent.rules; \
	install -D -m 0644 configs/gateagent.sysusers $$d/usr/lib/sysusers.d/gateagent.conf; \
	install -D -m 0644 configs/gateagent.tmpfiles $$d/usr/lib/tmpfiles.d/gateagent.conf; \
	install -D -m 0644 configs/gateagent.example.toml $$d/usr/share/gateagent/gateagent.example.toml; \
	install -D -m 0644 packaging/copyright $$d/usr/share/doc/gateagent/copyright; \
	install -d -m 0755 $$d/usr/share/man/man8; \
	gzip -n -9 <packaging/gateagent.8 >$$d/usr/share/man/man8/gateagent.8.gz; \
	{ set +x; } 2>/dev/null; \
	if [ -e $$d/etc/gateagent/gateagent.toml ]; then echo "kept $$d/etc/gateagent/gateagent.toml"; \
	else (set -x; install -D -m 0644 configs/gateagent.example.toml $$d/etc/gateagent/gateagent.toml); fi

check: ## gofmt, go vet, go mod tidy leaves the tree clean, arm64 builds, the import rules (internal/layout), every relative link of the docs resolves
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy
	@git diff --exit-code go.mod go.sum || { echo "go mod tidy changed go.mod/go.sum: commit the result"; exit 1; }
	CGO_ENABLED=0 GOARCH=arm64 $(GO) build ./...
	CGO_ENABLED=0 GOARCH=arm64 $(GO) vet ./...
	$(GO) test -count=1 ./internal/layout
	$(GO) run ./internal/cmd/linkcheck .

clean: ## remove bin/ (binaries and packages)
	rm -rf bin
