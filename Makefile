# tandem front door. `make up` and `make test` are all a user needs.
#   make build   release build (build/)
#   make test    deps + ASan/UBSan build with -Werror (build-test/) + every test via ctest
#   make up      deps + build + run the local stack on localhost:8000
#   make bench   run the benchmarks in bench/ and print their tables
#   make fuzz    longer libFuzzer runs (FUZZ_SECONDS each)
#   make tsan    ThreadSanitizer build of router + sidecar under the threaded tests
#   make format  clang-format every source file

CC ?= cc
JOBS ?= $(shell nproc)
PORT ?= 8000
FUZZ_SECONDS ?= 300

.PHONY: all build test up bench fuzz format clean deps k8s-bins clients-venv tsan

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j$(JOBS)

# Tests build with clang: libFuzzer targets need it, and one compiler keeps the
# sanitizer runtimes consistent.
build-test: deps
	@CC=clang cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DTANDEM_SANITIZE=ON \
	  -DTANDEM_FUZZ=ON >/dev/null
	@cmake --build build-test -j$(JOBS)

# The Kubernetes tests need kube-apiserver, kube-controller-manager, kubectl and etcd,
# built from Go modules once and cached in ~/.cache/tandem (tests/k8s/build.sh). Without
# Go they are skipped with one line, except under CI=true, where that fails.
k8s-bins:
	@tests/k8s/build.sh >/dev/null || { rc=$$?; \
	  if [ $$rc -eq 3 ] && [ "$${CI:-}" != true ]; then \
	    echo "make: Go is missing: the Kubernetes tests will be skipped"; \
	  else exit $$rc; fi; }

# The real-client tests (tests/clients/) run in a pinned Python venv cached in
# ~/.cache/tandem (tests/clients/setup-venv.sh). Without Python >= 3.12 or PyPI they are
# skipped with one line, except under CI=true, where that fails.
clients-venv:
	@tests/clients/setup-venv.sh >/dev/null || { rc=$$?; \
	  if [ $$rc -eq 3 ] && [ "$${CI:-}" != true ]; then \
	    echo "make: no venv for the client tests: they will be skipped"; \
	  else exit $$rc; fi; }

test: build-test k8s-bins clients-venv
	@cd build-test && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j$(JOBS)

# ThreadSanitizer: the router and the sidecar (worker threads, shared datastore,
# scheduler and metrics) under the threaded integration tests (--workers 2).
tsan: deps
	@CC=clang cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_TSAN=ON \
	  >/dev/null
	@cmake --build build-tsan -j$(JOBS) --target tandem
	@for t in test_router test_pd; do \
	  TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1" TANDEM_BIN=$(CURDIR)/build-tsan/tandem \
	  TANDEM_SRC=$(CURDIR) python3 tests/integration/$$t.py || exit 1; done

up: build
	@scripts/up.sh $(PORT)

bench: build
	@BENCH=1 scripts/deps.sh
	@bench/run-all.sh

fuzz: build-test
	@for f in build-test/fuzz_*; do \
	  n=$$(basename $$f | sed 's/^fuzz_//'); mkdir -p build-test/fuzz-corpus/$$n; \
	  echo "== $$f ($(FUZZ_SECONDS)s)"; \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/fuzz/lsan-libfyaml.supp:print_suppressions=0 \
	  $$f -max_total_time=$(FUZZ_SECONDS) build-test/fuzz-corpus/$$n tests/fuzz/corpus/$$n || exit 1; \
	done

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-test build-tsan
