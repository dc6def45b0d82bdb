#include "ferry/vmstate_demo.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "vmstate/samples/nvme_like.h"
#include "vmstate/vmstate.h"

namespace ferry::tools {

namespace {

using vmstate::samples::kNvmeLikeDesc;
using vmstate::samples::NvmeLike;
using Clock = std::chrono::steady_clock;

double micros_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

Result<std::vector<uint8_t>> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error(ErrorCode::kIo, "cannot open {}", path);
  std::vector<uint8_t> bytes;
  uint8_t chunk[65536];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0) {
      ::close(fd);
      return Error(ErrorCode::kIo, "cannot read {}", path);
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), chunk, chunk + n);
  }
  ::close(fd);
  return bytes;
}

int fail(std::string_view step, const Status& st) {
  fmt::print("  {} FAILED: {}\nresult: FAILED\n", step, st.to_string());
  return 1;
}

}  // namespace

int run_vmstate_demo(const VmstateDemoOptions& options) {
  fmt::print(
      "ferry demo\n"
      "  The full demo (an NVMe controller under a verifying guest workload, live-migrated\n"
      "  back and forth) needs the NVMe device and guest programs, which are not built yet.\n"
      "  Live migration between ferry-vm processes exists (tests/live_migration_test runs\n"
      "  it). Shown here: an NVMe-like device state through VMState into a file and back.\n\n");

  Status check = kNvmeLikeDesc.check();
  if (!check.ok()) return fail("registration check", check);

  NvmeLike source;
  vmstate::samples::fill_nvme_like(source, 2026);
  source.smart_units_read = 123456;
  source.smart_units_written = 654321;
  source.pending_events = {{1, 0, 2}, {2, 1, 3}};
  source.n_log = 3;
  source.error_log = {0x4002, 0x4004, 0x4281};
  fmt::print("  1. device state: 31 registers, 32 of 64 queues, {} pending events, {} error-log "
             "entries, SMART counters\n",
             source.pending_events.size(), source.error_log.size());

  // Save through the fd-backed writer, as a migration channel would.
  std::string dir = options.keep_dir;
  if (dir.empty()) {
    char tmpl[] = "/tmp/ferry-demo-XXXXXX";
    if (!::mkdtemp(tmpl)) return fail("temporary directory", Error(ErrorCode::kIo, "mkdtemp failed"));
    dir = tmpl;
  } else {
    ::mkdir(dir.c_str(), 0755);
  }
  std::string path = dir + "/nvme-like.state";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail("open", Error(ErrorCode::kIo, "cannot create {}", path));
  vmstate::Json vmdesc = vmstate::Json::object();
  auto start = Clock::now();
  Status st;
  uint64_t saved_bytes = 0;
  {
    FdWriter out(fd);
    st = kNvmeLikeDesc.save(source, out, vmdesc);
    if (st.ok()) st = out.flush();
    saved_bytes = out.position();
  }
  double save_us = micros_since(start);
  ::close(fd);
  if (!st.ok()) return fail("save", st);
  fmt::print("  2. save -> {}: {} bytes + vmdesc JSON ({} field entries, {} subsections) in {:.0f} us\n",
             path, saved_bytes, vmdesc["fields"].size(),
             vmdesc.contains("subsections") ? vmdesc["subsections"].size() : 0, save_us);

  auto bytes = read_file(path);
  if (!bytes.ok()) return fail("read back", bytes.status());
  NvmeLike destination;
  start = Clock::now();
  ByteReader in(*bytes);
  st = kNvmeLikeDesc.load(destination, in);
  double load_us = micros_since(start);
  if (!st.ok()) return fail("load", st);
  if (!in.at_end())
    return fail("load", Error(ErrorCode::kCorrupt, "{} bytes left over", in.remaining()));
  bool same = destination == source;
  fmt::print("  3. load <- file: {} bytes in {:.0f} us; destination identical to source: {}\n",
             bytes->size(), load_us, same ? "yes" : "NO");
  if (!same) return fail("verify", Error(ErrorCode::kInternal, "states differ after load"));

  auto before = vmstate::take_snapshot(kNvmeLikeDesc, destination);
  if (!before.ok()) return fail("snapshot", before.status());
  destination.queues[4]->tail += 7;
  destination.smart_units_written += 8;
  destination.csts |= 1;
  auto after = vmstate::take_snapshot(kNvmeLikeDesc, destination);
  if (!after.ok()) return fail("snapshot", after.status());
  auto changed = vmstate::diff(*before, *after);
  if (!changed.ok()) return fail("diff", changed.status());
  fmt::print("  4. the device runs on (queue 4 tail, CSTS, SMART units written change);\n"
             "     snapshot diff, what an early-migration delta would resend: {}\n",
             fmt::join(*changed, ", "));
  if (*changed != std::vector<std::string>{"csts", "queues", "nvme-like/smart"})
    return fail("diff", Error(ErrorCode::kInternal, "unexpected diff"));

  // Corrupt queue slot 1's NULL marker: the byte after slot 0's marker and queue.
  auto layout = vmstate::take_snapshot(kNvmeLikeDesc, source);
  if (!layout.ok()) return fail("snapshot", layout.status());
  auto queues = std::find_if(layout->fields.begin(), layout->fields.end(),
                             [](const vmstate::ByteRange& f) { return f.name == "queues"; });
  if (queues == layout->fields.end())
    return fail("layout", Error(ErrorCode::kInternal, "no queues field"));
  constexpr size_t kQueueBytes = 24;  // the eight fields of a queue
  std::vector<uint8_t> hostile = *bytes;
  hostile[queues->begin + 1 + kQueueBytes] = 0x5a;
  NvmeLike refused;
  ByteReader hostile_in(hostile);
  Status bad = kNvmeLikeDesc.load(refused, hostile_in);
  fmt::print("  5. a stream with one corrupted byte is refused:\n     {}\n",
             bad.ok() ? "ACCEPTED (wrong)" : bad.to_string());
  if (bad.ok()) return fail("hostile input", Error(ErrorCode::kInternal, "corruption accepted"));

  if (options.print_vmdesc) fmt::print("\nvmdesc:\n{}\n", vmdesc.dump(2));
  if (options.keep_dir.empty()) {
    ::unlink(path.c_str());
    ::rmdir(dir.c_str());
  }
  fmt::print("result: OK\n");
  return 0;
}

}  // namespace ferry::tools
