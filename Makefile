# Two commands for a fresh Debian bookworm machine: `make demo` and `make test`.
# Both install missing Debian packages first (scripts/install-deps.sh).
JOBS ?= $(shell nproc)

.PHONY: deps release asan tsan demo test test-release test-asan test-tsan bench clean

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
# under ASan+UBSan plus every libFuzzer target for FERRY_FUZZ_SECONDS each, then the
# threaded parts (event loop, dirty bitmaps, migration engines, block engines with their worker
# threads, the NVMe controller over them, ferry-vm migrating, QMP/qtest servers, the vCPU
# waiting for interrupts) under TSan.
test: test-release test-asan test-tsan
# The release, asan and tsan presets compile in unity batches (CMAKE_UNITY_BUILD): each batch
# parses the shared headers once, which takes about a third off the three builds of `make
# test`. Test code compiles at -O0/-Og (ferry_quick_build in CMakeLists.txt), and the
# sanitizer presets keep line tables only (-gline-tables-only: reports still name file and
# line; full debug info doubled object sizes and link times). The debug preset compiles file by file, so it still shows a file that does not
# include what it uses.

test-release: release
	@ctest --preset release -j $(JOBS)

test-asan: asan
	@ctest --preset asan -j $(JOBS)

TSAN_TARGETS = base_test memory_test migration_test block_test nvme_test nvme_migration_unit_test \
  live_migration_test nvme_migration_test guest_program_test guest_migration_test \
  block_error_policy_test vm_test ferry_vm_test guest_interrupts_test ferry-vm \
  migration_responsiveness_test operator_test shared_disk_test machine_reset_and_memory_test \
  virtqueue_test guest_virtio_test
test-tsan: deps
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan -j $(JOBS) --target $(TSAN_TARGETS)
	@TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build/tsan -j $(JOBS) --output-on-failure \
	  -R '^(EventLoop|DirtyBitmap|Engine|LiveMigration|BlockBackend|.*BlockEngineTest|NvmeTest|Nvme.*Migration|NvmeHostileStream|GuestProgram|GuestMigration|BlockErrorPolicy|QmpServerThreads|QtestConnect|CpuInterrupts|FerryVm|GuestInterrupts|Channel|OutgoingConnector|MigrationResponsiveness|OperatorSignals|SharedDisk|MachineReset|ConcurrentRing|Formats/RingFormatTest\.ADevicePolling)'
	@! grep -l ThreadSanitizer /tmp/ferry-vm-test-*.stderr 2>/dev/null

bench: release
	@./build/release/bench/vmstate_bench
	@./build/release/bench/ram_bench
	@./build/release/bench/nvme_bench
	@./build/release/bench/nvme_downtime_bench
	@./build/release/bench/net_bench
	@./build/release/bench/virtio_net_downtime_bench

clean:
	rm -rf build
