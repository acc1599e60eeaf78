# SpecServe. `make test` installs what a fresh Debian machine lacks and runs the tests (optimised: the model
# tests run real numeric loops); `make serve` builds release and runs the shipped model.

SHELL := /bin/bash
SWIFT ?= $(shell command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)
export SPECSERVE_TARGET_CPU ?= $(shell tools/target-cpu.sh)
MODEL ?= models/specserve-code
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test serve build deps bench-kernels clean

deps:
	@if ! pkg-config --exists openblas 2>/dev/null; then \
		echo "Installing libopenblas-dev and pkg-config…"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq libopenblas-dev pkg-config; \
	fi

# The suite is XCTest; Swift Testing is switched off so the run ends on XCTest's own summary line.
test: deps
	$(SWIFT) build -c release --build-tests -Xswiftc -enable-testing
	$(SWIFT) test -c release -Xswiftc -enable-testing --skip-build --disable-swift-testing

build: deps
	$(SWIFT) build -c release

CONFIG ?= config/default.json

serve: build
	@if [ "$(CONFIG)" = config/default.json ] && [ ! -f "$(MODEL)/model.safetensors" ]; then \
		echo "$(MODEL)/model.safetensors is missing: it is committed (git checkout -- $(MODEL)) and can be retrained (tools/train/README.md)."; \
		echo "Any HF-layout LLaMA folder can be served instead: point a copy of $(CONFIG) at it and run make serve CONFIG=that-file"; exit 1; \
	fi
	.build/release/specserve serve --config $(CONFIG)

bench-kernels: build
	@if [ -f "$(MODEL)/model.safetensors" ]; then .build/release/specserve bench-kernels --model $(MODEL); \
	else .build/release/specserve bench-kernels --synthetic; fi

clean:
	rm -rf .build

# libFuzzer targets (Tests/Fuzz, docs/RELIABILITY.md): FUZZ_SECONDS per target, FUZZ_TARGETS to pick some.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
.PHONY: fuzz
fuzz: deps
	SWIFT=$(SWIFT) tools/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Sanitizers (docs/RELIABILITY.md): the suite built with AddressSanitizer (LeakSanitizer included) or ThreadSanitizer,
# optimised like `make test`, each in its own build folder; a report fails the run. SANITIZE_FILTER runs part of it,
# e.g. `make tsan SANITIZE_FILTER=InferenceServerTests`. LeakSanitizer ignores what XCTest holds until exit
# (tools/sanitizers/lsan.supp); the `specserve serve` children of the process tests are built the same way.
SANITIZE_FILTER ?=
SANITIZE_RUN = $(SWIFT) test -c release -Xswiftc -enable-testing --skip-build --disable-swift-testing $(if $(SANITIZE_FILTER),--filter '$(SANITIZE_FILTER)')
.PHONY: asan tsan
asan: deps
	$(SWIFT) build -c release --build-tests -Xswiftc -enable-testing --sanitize=address --scratch-path .build-asan
	LSAN_OPTIONS=suppressions=$(CURDIR)/tools/sanitizers/lsan.supp $(SANITIZE_RUN) --sanitize=address --scratch-path .build-asan

tsan: deps
	$(SWIFT) build -c release --build-tests -Xswiftc -enable-testing --sanitize=thread --scratch-path .build-tsan
	$(SANITIZE_RUN) --sanitize=thread --scratch-path .build-tsan
