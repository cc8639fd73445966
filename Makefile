# Spindle — the two commands are `make test` and `make bench`; both install what they need.
#
#   make test        lint (make lint), build (debug) and run every test, then check the API
#                    documentation (make docs: every public symbol documented, every symbol link
#                    resolved), then show that the core products build without the integrations'
#                    packages (Tools/build/check-core-dependencies.sh, in .build-core)
#   make lint        swift format lint --strict with the root .swift-format (make format fixes
#                    what it can)
#   make docs        the DocC documentation of every module, checked, in .build/docs/combined
#   make bench       the benchmark report: table on stdout, bench-results/{report.md,results.json,chart.svg}
#   make bench-all   the same with every executor of every workload
#   make bench-peers install the peers' toolchains (Go, Node.js, Boost.Fiber), then make bench
#   make bench-check the hot-path regression guard (ordo-one/benchmark): allocation counts must
#                    match Benchmarks/Thresholds exactly, wall-clock p90 within 2x of them; then
#                    `spindle-bench doctor --gallery` must name every pitfall's cause, and no other
#   make build       debug build of the library
#   make asan        every test under AddressSanitizer (LeakSanitizer on; leaks are errors),
#                    with the fiber switch annotations compiled in
#   make tsan        every test under ThreadSanitizer (any report fails the run)
#   make valgrind    Spindle's programs under memcheck with the fiber stacks registered
#                    (Tools/valgrind/run.sh; any error or definitely-lost block fails)
#   make clean       remove build folders and benchmark output
#
# System packages come from Debian: installed with apt-get when run as root; otherwise the exact
# command is printed and make stops.

SHELL := /bin/bash
SWIFT ?= swift
BENCH_OUT ?= bench-results
BENCH_ARGS ?=

# Debian package -> a command or file that proves it is installed.
TEST_PACKAGES  := pkg-config libuv1-dev libboost-context-dev curl gdb
BENCH_PACKAGES := $(TEST_PACKAGES) valgrind binutils
# The peers the fanout workload runs side by side when installed (skipped otherwise).
PEER_PACKAGES  := golang-go nodejs libboost-fiber-dev g++

.PHONY: all test lint format docs bench bench-all bench-peers bench-check trace-cost build clean asan tsan valgrind deps-test deps-bench deps-peers

all: build

define ensure_packages
	@missing=""; \
	for pkg in $(1); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "Installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null || exit 1; \
	  else \
	    echo "Spindle needs these Debian packages:$$missing"; \
	    echo "Install them with:"; \
	    echo "  sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi; \
	command -v $(SWIFT) >/dev/null || { echo "swift is not on PATH (Swift 6.1 or newer is required)"; exit 1; }
endef

deps-test:
	$(call ensure_packages,$(TEST_PACKAGES))

deps-bench:
	$(call ensure_packages,$(BENCH_PACKAGES))

deps-peers:
	$(call ensure_packages,$(BENCH_PACKAGES) $(PEER_PACKAGES))

build: deps-test
	$(SWIFT) build

# Every Swift file of both packages, the manifests included.
LINT_PATHS := Package.swift Sources Tests Examples Tools Benchmarks/Package.swift Benchmarks/Sources \
	Benchmarks/Benchmarks

lint: deps-test
	$(SWIFT) format lint --strict --parallel -r $(LINT_PATHS)

format: deps-test
	$(SWIFT) format format --in-place --parallel -r $(LINT_PATHS)

test: deps-test lint
	@bash Tools/build/forget-stale-modules.sh .build --library-sources
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	SWIFT=$(SWIFT) bash Tools/docs/build-docs.sh --quiet
	@bash Tools/build/forget-stale-modules.sh .build-core --library-sources
	SWIFT=$(SWIFT) bash Tools/build/check-core-dependencies.sh

docs: deps-test
	SWIFT=$(SWIFT) bash Tools/docs/build-docs.sh

bench: deps-bench
	@bash Tools/build/forget-stale-modules.sh Benchmarks/.build --library-sources
	cd Benchmarks && $(SWIFT) build -c release
	Benchmarks/.build/release/spindle-bench run --out $(BENCH_OUT) $(BENCH_ARGS)

# The headline suite with every peer installed first.
bench-peers: deps-peers
	@bash Tools/build/forget-stale-modules.sh Benchmarks/.build --library-sources
	cd Benchmarks && $(SWIFT) build -c release
	Benchmarks/.build/release/spindle-bench run --out $(BENCH_OUT) $(BENCH_ARGS)

# Exits non-zero when an allocation count differs from the committed thresholds, fewer as well
# as more (package-benchmark exits 2 on "better than threshold"), or a wall-clock p90 passes 2x
# its threshold. After a deliberate change: cd Benchmarks && swift package
# --allow-writing-to-package-directory benchmark thresholds update --target SpindleRegression
# (then keep the committed wall-clock figures, which one quiet run would tighten).
bench-check: deps-bench
	@bash Tools/build/forget-stale-modules.sh Benchmarks/.build --library-sources
	cd Benchmarks && $(SWIFT) package benchmark thresholds check --target SpindleRegression --no-progress
	cd Benchmarks && $(SWIFT) build -c release --product spindle-bench
	Benchmarks/.build/release/spindle-bench doctor --gallery

# What the trace recorder costs a fiber switch: instructions with tracing off and on, against a
# second build of spindle-bench with no tracing code (-DSPINDLE_NO_TRACE, in Benchmarks/.build-notrace).
trace-cost: deps-bench
	@bash Tools/build/forget-stale-modules.sh Benchmarks/.build --library-sources
	@bash Tools/build/forget-stale-modules.sh Benchmarks/.build-notrace --library-sources
	cd Benchmarks && $(SWIFT) build -c release --product spindle-bench
	cd Benchmarks && $(SWIFT) build -c release --product spindle-bench --scratch-path .build-notrace \
		-Xswiftc -DSPINDLE_NO_TRACE -Xcc -DSPINDLE_NO_TRACE
	Benchmarks/.build/release/spindle-bench trace-cost --trace-free Benchmarks/.build-notrace/release/spindle-bench

# Every executor of every workload (adds the slow echo servers: swift-async-global, threads).
bench-all: deps-bench
	@bash Tools/build/forget-stale-modules.sh Benchmarks/.build --library-sources
	cd Benchmarks && $(SWIFT) build -c release
	Benchmarks/.build/release/spindle-bench run --all --out $(BENCH_OUT) $(BENCH_ARGS)

# The XCTest half of `swift test` is skipped: it runs no test here and LeakSanitizer reports
# XCTest's own allocations.
ASAN_FLAGS := --sanitize=address -Xswiftc -DSPINDLE_SANITIZERS --scratch-path .build-asan
asan: deps-test
	@bash Tools/build/forget-stale-modules.sh .build-asan --library-sources
	$(SWIFT) build --build-tests $(ASAN_FLAGS)
	$(SWIFT) test --skip-build $(ASAN_FLAGS) --disable-xctest

# The whole suite under ThreadSanitizer, with the fiber switch annotations compiled in; any
# report fails the run (TSan's exit code). Tools/tsan/suppressions.txt says why each of its
# (few, narrow) entries is not a race.
TSAN_FLAGS := --sanitize=thread -Xswiftc -DSPINDLE_SANITIZERS --scratch-path .build-tsan
tsan: deps-test
	@bash Tools/build/forget-stale-modules.sh .build-tsan --library-sources
	$(SWIFT) build --build-tests $(TSAN_FLAGS)
	TSAN_OPTIONS="exitcode=66 suppressions=$(CURDIR)/Tools/tsan/suppressions.txt $(TSAN_OPTIONS)" \
		$(SWIFT) test --skip-build $(TSAN_FLAGS) --disable-xctest

clean:
	rm -rf .build .build-asan .build-tsan .build-core Benchmarks/.build Benchmarks/.build-notrace $(BENCH_OUT)

valgrind: deps-test
	$(call ensure_packages,valgrind binutils)
	bash Tools/valgrind/run.sh
