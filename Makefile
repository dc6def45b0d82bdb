# Two commands for a fresh Debian bookworm machine: `make demo` and `make test`.
# Both install missing Debian packages first (scripts/install-deps.sh).
JOBS ?= $(shell nproc)

.PHONY: deps release asan tsan demo test test-release test-asan bench clean

deps:
	@bash scripts/install-deps.sh

release: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

asan: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS)

tsan: deps
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan -j $(JOBS)

demo: release
	@./build/release/tools/ferry demo

# The whole suite: unit and multi-process tests in the release build, then the same tests
# under ASan+UBSan plus every libFuzzer target for FERRY_FUZZ_SECONDS each.
test: test-release test-asan

test-release: release
	@ctest --preset release -j $(JOBS)

test-asan: asan
	@ctest --preset asan -j $(JOBS)

bench: release
	@./build/release/bench/vmstate_bench

clean:
	rm -rf build
