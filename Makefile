# Quick start on a fresh Debian 12 machine: `make serve` and `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test serve bench clean

all: build

deps:
	@bash scripts/install_deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@bash scripts/run_tests.sh $(BUILD)

# Serves the embedded default model on port 8000 (OpenAI-compatible API).
serve: build
	$(BUILD)/bin/sluice serve --port 8000

bench: build
	@bash bench/run_cpu_benchmarks.sh $(BUILD)

clean:
	rm -rf $(BUILD) build-asan
