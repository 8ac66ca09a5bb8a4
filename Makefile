# shared-buffer: `make demo` runs the example, `make test` runs every check, `make bench` the
# benchmarks. Deno and Bun are used from the PATH when there, else fetched (pinned) from the npm
# registry into .tools/.

DENO_VERSION := 2.9.6
BUN_VERSION := 1.4.5
TOOLS := $(CURDIR)/.tools/node_modules/.bin
LIB := target/release/libshared_buffer_native.so

DENO ?= $(or $(shell command -v deno 2>/dev/null),$(TOOLS)/deno)
BUN ?= $(or $(shell command -v bun 2>/dev/null),$(TOOLS)/bun)
export DENO BUN
# Tests and benchmarks start child processes of both runtimes through these.
export DENO_BIN := $(DENO)
export BUN_BIN := $(BUN)

DENO_RUN := $(DENO) run --allow-ffi --allow-read --allow-env --allow-run
DENO_TEST := $(DENO) test --allow-all --v8-flags=--expose-gc

.PHONY: all build generate demo test test-rust test-loom test-deno test-bun lint bench tools clean \
	check-deep deep-tools test-miri test-asan test-tsan

all: build

build: $(LIB)

$(LIB): $(wildcard crates/*/src/*.rs crates/*/src/*/*.rs crates/*/Cargo.toml) Cargo.toml Cargo.lock
	cargo build --release -p shared-buffer-native
	cargo build --release -p shared-buffer-native --examples
	@touch $@

# Rewrites the checked-in files generated from the Rust source (ts/ffi.ts from
# crates/native/src/abi.rs, ts/channel/layout.ts from the channel layout, the channel's golden
# byte traces in tests/golden/); `make test` fails while they are out of date.
generate:
	SB_GENERATE=1 cargo test -q -p shared-buffer-native --test generated
	SB_GENERATE=1 cargo test -q -p shared-buffer --test golden

$(TOOLS)/deno $(TOOLS)/bun:
	npm install --prefix .tools --no-audit --no-fund --loglevel=error \
		deno@$(DENO_VERSION) bun@$(BUN_VERSION)

tools: $(if $(filter $(TOOLS)/%,$(DENO) $(BUN)),$(TOOLS)/deno)
	@$(DENO) --version | head -1
	@echo "bun $$($(BUN) --version)"

demo: tools build
	$(DENO_RUN) examples/seed_demo.ts
	@echo
	$(DENO_RUN) examples/worker_pool.ts 4

lint: tools
	cargo fmt --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(DENO) fmt --check
	$(DENO) lint
	$(DENO) check mod.ts tests/ examples/ bench/

test-rust:
	cargo test --workspace


# Every interleaving of the channel's producers and consumer over a tiny ring (about a minute).
test-loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p shared-buffer --lib channel::loom_tests

test-deno: tools build
	$(DENO_TEST) tests/

test-bun: tools build
	cd tests && $(BUN) test --timeout 60000

test: lint test-rust test-loom test-deno test-bun

# Deeper checks of the Rust core, not part of `make test` (several minutes each): Miri on the
# channel ring and layout over heap memory, and the Rust tests under AddressSanitizer and
# ThreadSanitizer. They need a nightly toolchain with miri and rust-src; `deep-tools` installs it.
NIGHTLY ?= nightly
HOST := $(shell rustc -vV | sed -n 's/^host: //p')
SANITIZE = RUSTFLAGS="-Zsanitizer=$(1)" RUSTDOCFLAGS="-Zsanitizer=$(1)" \
	CARGO_TARGET_DIR=target/$(1) cargo +$(NIGHTLY) test -Zbuild-std --target $(HOST) \
	-p shared-buffer -p shared-buffer-native --tests

check-deep: deep-tools test-miri test-asan test-tsan

deep-tools:
	rustup toolchain install $(NIGHTLY) --profile minimal --component miri,rust-src

test-miri:
	cargo +$(NIGHTLY) miri test -p shared-buffer --lib channel::layout
	cargo +$(NIGHTLY) miri test -p shared-buffer --test channel

test-asan:
	$(call SANITIZE,address)

# report_mutex_bugs=0: the lock tests unlock a held lock from the wrong thread on purpose (it must
# fail with EPERM), which ThreadSanitizer would report as a misuse; data races are still reported.
test-tsan:
	TSAN_OPTIONS="halt_on_error=1 report_mutex_bugs=0" $(call SANITIZE,thread)

# Every benchmark, SB_BENCH_RUNS times (default 3): bench/out/results.json, printed as JSON.
# `$(DENO) run -A bench/report.ts` turns it into bench/README.md's tables and the chart.
bench: tools build
	$(DENO) run --allow-all bench/run.ts

clean:
	cargo clean
	rm -rf .tools bench/out
