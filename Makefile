# shared-buffer: `make` builds the native library and the JavaScript Node.js runs, `make demo`
# runs the example, `make test` runs every check, `make bench` the benchmarks. Deno and Bun are
# used from the PATH when there, else fetched (pinned) from the npm registry into .tools/. Node.js
# runs twice: the machine's (20 or newer) and the newest, pinned from the npm registry into .tools/.

DENO_VERSION := 2.9.6
BUN_VERSION := 1.4.5
NODE_VERSION := 26.10.0
TYPESCRIPT_VERSION := 7.0.2
ESBUILD_VERSION := 0.28.2
# Only for the tests: a user's webpack bundle of the package.
WEBPACK_VERSION := 5.113.0
VERDACCIO_VERSION := 6.8.0
ZIGLANG_VERSION := 0.17.1
ZIGBUILD_VERSION := 0.24.1
SEED_VERSION := 1.4.0
# Make cannot take a path with a space for a target, and a clone may lie under one: targets and
# prerequisites are relative to the clone; what child processes are given is absolute, and every
# recipe quotes it.
TOOLS := .tools/node_modules/.bin
# Everything here, and the bindings' look for a clone's build, uses this clone's target/: a
# CARGO_TARGET_DIR set for other projects would put the library where neither looks.
export CARGO_TARGET_DIR := $(CURDIR)/target
LIB := target/release/libshared_buffer_native.so
# The Rust peers the conformance tests run (crates/native/examples/).
PEERS := target/release/examples/channel_peer

DENO ?= $(or $(shell command -v deno 2>/dev/null),$(CURDIR)/$(TOOLS)/deno)
BUN ?= $(or $(shell command -v bun 2>/dev/null),$(CURDIR)/$(TOOLS)/bun)
# The machine's Node.js, and the newest one.
NODE ?= $(or $(shell command -v node 2>/dev/null),$(CURDIR)/$(TOOLS)/node)
NODE_LATEST := $(CURDIR)/$(TOOLS)/node
# The npm install that fetches Deno and Bun, when either is the fetched one.
FETCHED_DENO := $(if $(findstring $(CURDIR)/$(TOOLS)/,$(DENO)),$(TOOLS)/deno)
FETCHED_DENO_BUN := $(if $(findstring $(CURDIR)/$(TOOLS)/,$(DENO)$(BUN)),$(TOOLS)/deno)
export DENO BUN NODE
# Tests and benchmarks start child processes of every runtime through these.
export DENO_BIN := $(DENO)
export BUN_BIN := $(BUN)
export NODE_BIN := $(NODE)

# Node.js runs JavaScript built from the TypeScript sources: ES modules and .d.ts by tsc, one file
# per source (so the tests share module instances with the library), and the CommonJS bundle for
# `require` by esbuild (tsc cannot emit CommonJS from modules that the tests load as ES modules).
TSC := $(TOOLS)/tsc
ESBUILD := $(TOOLS)/esbuild
NODE_TOOLS := .tools/node-$(NODE_VERSION)-typescript-$(TYPESCRIPT_VERSION)-esbuild-$(ESBUILD_VERSION)-webpack-$(WEBPACK_VERSION)
TS_SOURCES := $(wildcard *.ts ts/*.ts ts/*/*.ts tests/*.ts tests/children/*.ts tests/children/*/*.ts examples/*.ts bench/*.ts bench/*/*.ts)
# The seed package (npm shared-buffer), a node-gyp addon built against the machine's Node headers,
# which the tests open segments with from Node. One build per Node ABI (`process.versions.modules`):
# after the Node on the PATH changes, the build for the old one would not load.
NODE_ABI := $(shell "$(NODE)" -p process.versions.modules 2>/dev/null)
SEED_DIR := .tools/seed-abi$(NODE_ABI)
SEED := $(SEED_DIR)/node_modules/shared-buffer/build/Release/shared-buffer.node
export SEED_PACKAGE := $(CURDIR)/$(SEED_DIR)/node_modules/shared-buffer
export SEED_NODE := $(NODE)
# Test files run in parallel, each in its own process (one per core): the native library's state
# (open handles, mappings) is per process, and some tests count it.
NODE_TEST = "$(1)" --expose-gc --test --test-concurrency=$(JOBS) --test-timeout=600000 \
	--test-reporter=spec dist/tests/*.test.js
JOBS := $(shell getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)

DENO_RUN := "$(DENO)" run --allow-ffi --allow-read --allow-env --allow-run
DENO_TEST := "$(DENO)" test --allow-all --v8-flags=--expose-gc

.PHONY: all build generate dist demo test shm-before-test test-rust test-loom test-loom-low test-deno test-bun test-node test-node-oldest test-node-latest lint bench bench-ab \
	tools clean cross-tools package test-install check-deep deep-tools test-miri test-asan test-tsan

all: build

build: $(LIB) $(PEERS) dist/node.js dist/node.cjs dist/deno.js

RUST_SOURCES := $(wildcard crates/*/src/*.rs crates/*/src/*/*.rs crates/*/examples/*.rs \
	crates/*/Cargo.toml) Cargo.toml Cargo.lock

$(LIB): $(RUST_SOURCES)
	cargo build --release -p shared-buffer-native
	@touch $@

# A target of its own: a library built by hand with `cargo build` must not leave them stale.
$(PEERS): $(RUST_SOURCES)
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

$(NODE_TOOLS):
	npm install --prefix .tools --no-audit --no-fund --loglevel=error \
		node@$(NODE_VERSION) typescript@$(TYPESCRIPT_VERSION) esbuild@$(ESBUILD_VERSION) \
		webpack@$(WEBPACK_VERSION)
	@touch $@

# Built with the machine's Node (the addon's ABI is that Node's); node-gyp finds its headers in
# <prefix>/include/node. A Node without headers there (one installed from the npm registry) cannot
# build it: the demo and the tests then leave the seed out, and say so; `unbuildable` keeps later
# runs from trying again (remove $(SEED_DIR) to retry).
$(SEED):
	@if [ -f $(SEED_DIR)/unbuildable ]; then \
		echo "the seed package is left out: it could not be built for this Node (remove $(SEED_DIR) to try again)" >&2; \
	elif ! npm_config_nodedir="$${npm_config_nodedir:-$$(dirname "$$(readlink -f "$(NODE)")")/..}" \
		npm install --prefix $(SEED_DIR) --no-audit --no-fund --loglevel=error \
		shared-buffer@$(SEED_VERSION); then \
		mkdir -p $(SEED_DIR) && touch $(SEED_DIR)/unbuildable; \
		echo "the seed package could not be built for $$("$(NODE)" --version) ($(NODE)): the demo and the tests leave it out" >&2; \
	fi

# Twins of the declarations tsc writes: CommonJS ones (.d.cts) for `require`, and ones Deno can
# follow (.d.mts; see packaging/declarations.ts).
dist/node.js: $(TS_SOURCES) tsconfig.node.json | $(NODE_TOOLS) $(FETCHED_DENO)
	$(TSC) -p tsconfig.node.json
	"$(DENO)" run --quiet --allow-read=dist --allow-write=dist packaging/declarations.ts
	@touch $@

# The bundle is given the import.meta.url the ES module build of ts/node/backend.ts has, which
# that adapter finds the package's folder from. --keep-names: classes esbuild renames inside the
# bundle (`_SharedMemory`) keep their own name in `name`, `util.inspect` and stack traces.
dist/node.cjs: $(TS_SOURCES) | $(NODE_TOOLS)
	$(ESBUILD) node.ts --bundle --platform=node --format=cjs --target=node20 --keep-names --log-level=warning \
		--outfile=$@ --define:import.meta.url=__sb_module_url \
		'--banner:js=const __sb_module_url = require("node:url").pathToFileURL(__dirname + "/ts/node/backend.js").href;'

tools: $(FETCHED_DENO_BUN) $(NODE_TOOLS) $(SEED)
	@"$(DENO)" --version | head -1
	@echo "bun $$("$(BUN)" --version)"
	@echo "node $$("$(NODE)" --version) and $$("$(NODE_LATEST)" --version)"

demo: tools build
	$(DENO_RUN) examples/seed_demo.ts
	@echo
	$(DENO_RUN) examples/worker_pool.ts 4

lint: tools
	cargo fmt --check
	cargo clippy --workspace --all-targets -- -D warnings
	"$(DENO)" fmt --check
	"$(DENO)" lint
	"$(DENO)" check mod.ts node.ts tests/ examples/ bench/ packaging/pack.ts
	# Every export documented, and no public signature naming a type the package does not export.
	"$(DENO)" doc --lint mod.ts node.ts bun.ts
	# Deno's parallel test files share one process: a file that counts its handles, mappings or
	# threads must run alone (DENO_ALONE), or another file's segments change its count.
	@for file in $$(grep -l 'openHandleCount\|/proc/self/maps\|/proc/self/task' tests/*.test.ts); do \
		case " $(DENO_ALONE) " in *" $$file "*) ;; \
		*) echo "$$file counts process-wide state: add it to DENO_ALONE"; exit 1 ;; esac; \
	done

test-rust:
	cargo test --workspace


# Every interleaving of the channel's producers and consumer over a tiny ring, up to two
# preemptions: twelve models (about 150 s of CPU in all, 80 s on two cores; each prints how many
# interleavings it ran).
LOOM_TEST = RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p shared-buffer --lib channel::loom_tests -- --nocapture
test-loom:
	$(LOOM_TEST)

# `make test` runs them again only when what they check changed since they last passed here: the
# crate's sources, the manifests, the lock file, this Makefile, the Rust toolchain and loom's own
# settings from the environment (LOOM_*, both in the stamp's name). The stamp takes the time the
# run began, so that a source changed during a run is newer than it; a run of no model at all
# (a filter or flags that left none) does not count as passed. (No $(MAKE) in its recipe: `make -n`
# runs such lines, and this one writes under target/, which a fresh clone does not have.)
LOOM_STAMP := target/loom/passed-$(shell (rustc -V; env | grep '^LOOM_' | sort) | cksum | tr ' ' -)
$(LOOM_STAMP): $(shell find crates/shared-buffer/src -name "*.rs") crates/shared-buffer/Cargo.toml Cargo.toml Cargo.lock Makefile
	@mkdir -p $(@D) && touch $@.start
	@$(LOOM_TEST) > $@.log 2>&1; status=$$?; cat $@.log; \
	if [ $$status -ne 0 ]; then rm -f $@.start; exit $$status; fi; \
	if ! grep -Eq 'test result: ok\. [1-9][0-9]* passed' $@.log; then \
		echo "test-loom ran no model"; rm -f $@.start; exit 1; fi
	@mv $@.start $@

# Deno runs parallel test files in one process: the files that count the process's handles,
# mappings or threads run alone after the others.
DENO_ALONE := tests/lifecycle.test.ts tests/napi.test.ts tests/node_transfer.test.ts tests/seed.test.ts \
	tests/segment.test.ts tests/transfer.test.ts tests/wait_many.test.ts
test-deno: tools build
	$(DENO_TEST) --no-check --parallel $(filter-out $(DENO_ALONE),$(wildcard tests/*.test.ts))
	$(DENO_TEST) --no-check $(DENO_ALONE)

test-bun: tools build
	cd tests && "$(BUN)" test --timeout 60000 --parallel=$(JOBS)

# The suite in the machine's Node.js and in the newest (once where they are the same), side by
# side: most of their time is spent waiting on child processes. Each starts Node children of its
# own kind, and prints its output whole when it ends.
ifeq ($(NODE),$(NODE_LATEST))
NODE_SUITES := test-node-latest
else
NODE_SUITES := test-node-oldest test-node-latest
endif
test-node: tools build
	$(MAKE) --no-print-directory -j2 --output-sync=target $(NODE_SUITES)

test-node-oldest:
	NODE_BIN="$(NODE)" $(call NODE_TEST,$(NODE))

test-node-latest:
	NODE_BIN="$(NODE_LATEST)" $(call NODE_TEST,$(NODE_LATEST))

# Every test removes the segments it makes: what the suite could leave behind is listed first, and
# what appeared since, with no live process holding it, fails the run (tests/leftovers.sh).
SHM_BEFORE_TEST := target/shm-before-test.txt
# The loom models, CPU alone, run at the lowest priority beside the suites, which spend much of
# their time waiting on child processes, and print when they are done: on two idle cores the
# whole took 5m08s to 5m40s with them in turn, 4m10s to 4m56s beside (5m11s on a slower day),
# and they run only when what they check changed since they last passed (LOOM_STAMP). In the
# shell, not as a parallel make, so that the suites' own sub-makes keep their job counts; in a
# session of their own, so that an interrupt stops the whole group (cargo's test binary too). Once
# the suites are done, the models' session, if still running (the pid still this shell's child),
# takes the usual priority: at the lowest, beside busy processes of other sessions, they got 4.5%
# of a CPU and were unfinished 20 minutes on.
test: shm-before-test lint build
	@log=$$(mktemp); $$(command -v setsid) $(MAKE) --no-print-directory test-loom-low \
		> "$$log" 2>&1 & loom=$$!; \
	trap 'kill -- -$$loom 2>/dev/null || kill $$loom; rm -f "$$log"; exit 130' INT TERM; \
	$(MAKE) --no-print-directory test-rust test-deno test-bun test-node; suites=$$?; \
	if [ "$$(cut -d' ' -f4 /proc/$$loom/stat 2>/dev/null)" = $$$$ ]; then \
		echo 0 2>/dev/null > /proc/$$loom/autogroup; fi; \
	wait $$loom; models=$$?; cat "$$log"; rm -f "$$log"; \
	if [ $$models -ne 0 ]; then echo "test-loom failed"; fi; \
	[ $$suites -eq 0 ] && [ $$models -eq 0 ]
	tests/leftovers.sh check $(SHM_BEFORE_TEST)

# test-loom at the lowest priority, its session's too: the kernel's autogroups share the CPU
# between sessions whatever their processes' nice values.
test-loom-low:
	@if [ -w /proc/self/autogroup ]; then echo 19 > /proc/self/autogroup; fi
	nice -n 19 $(MAKE) --no-print-directory $(LOOM_STAMP)

shm-before-test:
	@mkdir -p target && tests/leftovers.sh list > $(SHM_BEFORE_TEST)

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
# Node is measured in the newest release (pinned as Deno and Bun are), not the oldest supported
# one the tests also run: BENCH_NODE=node measures the one on the PATH.
BENCH_NODE ?= $(NODE_LATEST)
bench: tools build
	NODE="$(BENCH_NODE)" "$(DENO)" run --allow-all bench/run.ts

# The bench of commit BASE and of the working tree, alternating, on one host in the same minutes:
# bench/out/ab.json, printed as JSON. SCENARIOS (default: all) picks scenarios of bench/scenarios/.
bench-ab: tools build
	@test -n "$(BASE)" || { echo "usage: make bench-ab BASE=<commit> [SCENARIOS='hotpath attach']"; exit 2; }
	NODE="$(BENCH_NODE)" "$(DENO)" run --allow-all bench/ab.ts $(BASE) $(SCENARIOS)

# Deno runs the package's JavaScript when it comes from npm (it does not strip types under
# node_modules): one bundle of mod.ts.
dist: dist/node.js dist/node.cjs dist/deno.js

dist/deno.js: $(TS_SOURCES) | $(FETCHED_DENO)
	"$(DENO)" bundle --quiet --platform deno --keep-names -o $@ mod.ts

# Cross builds: cargo-zigbuild and zig from PyPI, the Rust targets, and from Debian: qemu-user
# with the arm64 C library (to run the arm64 build), musl (to run the musl build), llvm (to read
# the macOS files).
PYTOOLS := .tools/py
CROSS_TARGETS := x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-unknown-linux-musl \
	aarch64-unknown-linux-musl x86_64-apple-darwin aarch64-apple-darwin
CROSS_DEBS := qemu-user libc6-arm64-cross musl llvm

$(PYTOOLS)/bin/cargo-zigbuild:
	python3 -m pip install --quiet --disable-pip-version-check --target $(PYTOOLS) \
		ziglang==$(ZIGLANG_VERSION) cargo-zigbuild==$(ZIGBUILD_VERSION)

cross-tools: $(PYTOOLS)/bin/cargo-zigbuild
	rustup target add $(CROSS_TARGETS) 2>&1 | grep -v "is up to date" || true
	@command -v qemu-aarch64 >/dev/null && command -v llvm-nm >/dev/null \
		&& test -e /usr/aarch64-linux-gnu/lib/libc.so.6 && test -e /lib/ld-musl-x86_64.so.1 \
		|| { apt-get update -qq && apt-get install -y -qq $(CROSS_DEBS) >/dev/null; }

# Every npm tarball into target/npm/: one package per platform and the main package.
package: tools cross-tools build dist
	PATH="$(CURDIR)/$(PYTOOLS)/bin:$$PATH" CARGO_ZIGBUILD_ZIG_PATH="$(CURDIR)/$(PYTOOLS)/ziglang/zig" \
		"$(DENO)" run --allow-all packaging/pack.ts

.tools/verdaccio/node_modules/.bin/verdaccio:
	mkdir -p .tools/verdaccio
	printf '{ "private": true, "dependencies": { "verdaccio": "$(VERDACCIO_VERSION)" }, "overrides": { "node-fetch": "2.7.0" } }\n' \
		> .tools/verdaccio/package.json
	npm install --prefix .tools/verdaccio --no-audit --no-fund --loglevel=error

# Installs the tarballs from a local registry into fresh projects, as users do, in Node.js 20,
# the newest Node.js, Deno and Bun, and runs a program that shares one segment and one channel.
test-install: package .tools/verdaccio/node_modules/.bin/verdaccio | $(NODE_TOOLS)
	NODE_NEWEST="$(NODE_LATEST)" VERDACCIO="$(CURDIR)/.tools/verdaccio/node_modules/.bin/verdaccio" \
		bash packaging/install/test.sh

clean:
	cargo clean
	rm -rf .tools bench/out dist
