// Writes the seed corpus of vmstate_load_fuzzer: valid streams of diverse NVMe-like states
// at versions 1 and 2, and a few broken ones close to valid (so mutations start near the
// interesting error paths). Every seed is checked to load, or to fail, as intended.
//
// Each file is: one version-selector byte (the fuzzer maps it to version 1 + byte % 3),
// then the section body.
//
// Regenerate the committed seeds (output is deterministic) from the repository root:
//   cmake --preset asan && cmake --build --preset asan --target vmstate_make_seeds
//   rm -f fuzz/corpus/vmstate_load/* && build/asan/fuzz/vmstate_make_seeds fuzz/corpus/vmstate_load
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "base/status.h"
#include "nvme_fuzz_controller.h"
#include "vmstate/samples/nvme_like.h"
#include "vmstate/vmstate.h"

namespace {

using ferry::ByteReader;
using ferry::ByteWriter;
using ferry::Status;
using ferry::vmstate::Snapshot;
using ferry::vmstate::samples::Event;
using ferry::vmstate::samples::fill_nvme_like;
using ferry::vmstate::samples::kNvmeLikeDesc;
using ferry::vmstate::samples::kQueueSlots;
using ferry::vmstate::samples::NvmeLike;
using ferry::vmstate::samples::Queue;
using Bytes = std::vector<uint8_t>;

enum class Expect { kLoads, kLoadsWithTrailing, kFails };

struct Seed {
  std::string name;
  int version;
  Bytes stream;
  Expect expect;
};

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "make_seeds: %s\n", why.c_str());
  std::exit(1);
}

Snapshot snapshot(NvmeLike& s) {
  auto snap = ferry::vmstate::take_snapshot(kNvmeLikeDesc, s);
  if (!snap.ok()) die("snapshot failed: " + snap.status().to_string());
  return std::move(snap).value();
}

Bytes saved(NvmeLike& s) { return snapshot(s).bytes; }

const ferry::vmstate::ByteRange& field_range(const Snapshot& snap, std::string_view name) {
  for (const auto& r : snap.fields)
    if (r.name == name) return r;
  die("no field " + std::string(name));
}

const ferry::vmstate::ByteRange& subsection_range(const Snapshot& snap, std::string_view name) {
  for (const auto& r : snap.subsections)
    if (r.name == name) return r;
  die("no subsection " + std::string(name));
}

// A version-1 stream of `s`: its version-2 bytes without the fields added in version 2
// (found from the description, located by the snapshot's byte ranges).
Bytes as_version1(NvmeLike& s) {
  Snapshot snap = snapshot(s);
  std::vector<int> since;
  std::apply([&](const auto&... f) { (since.push_back(f.since_version), ...); },
             kNvmeLikeDesc.fields());
  Bytes out;
  size_t pos = 0;
  for (size_t i = 0; i < snap.fields.size(); ++i) {
    if (since[i] <= 1) continue;
    out.insert(out.end(), snap.bytes.begin() + pos, snap.bytes.begin() + snap.fields[i].begin);
    pos = snap.fields[i].end;
  }
  out.insert(out.end(), snap.bytes.begin() + pos, snap.bytes.end());
  return out;
}

Bytes subsection_header(std::string_view name, uint32_t version) {
  ByteWriter w;
  w.put_u8(ferry::vmstate::wire::kSubsection);
  w.put_u8(static_cast<uint8_t>(name.size()));
  w.put_bytes(name);
  w.put_be32(version);
  return w.to_vector();
}

void append(Bytes& to, const Bytes& more) { to.insert(to.end(), more.begin(), more.end()); }

void add_events(NvmeLike& s, size_t n) {
  for (size_t i = 0; i < n; ++i)
    s.pending_events.push_back(Event{static_cast<uint8_t>(i + 1), static_cast<uint8_t>(i * 7),
                                     static_cast<uint8_t>(0x80 | i)});
}

void add_log(NvmeLike& s, uint16_t n) {
  s.n_log = n;
  s.error_log.resize(n);
  for (uint16_t i = 0; i < n; ++i) s.error_log[i] = static_cast<uint16_t>(0x1000 + i * 3);
}

void set_serial(NvmeLike& s) {
  const char* text = "FERRY-NVME-0042";
  for (size_t i = 0; i < s.serial.size(); ++i) s.serial[i] = static_cast<uint8_t>(text[i]);
}

// The richest state: every kind of field and both subsections populated.
void fill_everything(NvmeLike& s, uint32_t seed) {
  fill_nvme_like(s, seed);
  add_log(s, 8);
  set_serial(s);
  s.smart_units_read = 0x1122334455667788ULL;
  s.smart_units_written = 42;
  add_events(s, 3);
}

std::vector<Seed> make_seeds() {
  std::vector<Seed> seeds;
  auto add = [&](std::string name, int version, Bytes stream, Expect expect) {
    seeds.push_back({std::move(name), version, std::move(stream), expect});
  };

  // ---- valid version-2 streams ----
  {
    NvmeLike s;
    add("v2-empty", 2, saved(s), Expect::kLoads);
  }
  {
    NvmeLike s;
    fill_nvme_like(s, 1);
    add("v2-filled", 2, saved(s), Expect::kLoads);
  }
  {
    NvmeLike s;
    fill_nvme_like(s, 2);
    add_log(s, 8);
    set_serial(s);
    add("v2-log-serial", 2, saved(s), Expect::kLoads);
  }
  {
    NvmeLike s;
    fill_nvme_like(s, 3);
    s.smart_units_read = 7;
    s.smart_units_written = 9;
    add("v2-smart", 2, saved(s), Expect::kLoads);
  }
  {
    NvmeLike s;
    add_events(s, 2);
    add("v2-events-only", 2, saved(s), Expect::kLoads);
  }
  {
    NvmeLike s;
    fill_everything(s, 4);
    add("v2-everything", 2, saved(s), Expect::kLoads);
  }
  {
    // Subsections may arrive in any order.
    NvmeLike s;
    fill_everything(s, 5);
    Snapshot snap = snapshot(s);
    const auto& smart = subsection_range(snap, "nvme-like/smart");
    const auto& events = subsection_range(snap, "nvme-like/events");
    Bytes out(snap.bytes.begin(), snap.bytes.begin() + smart.begin);
    out.insert(out.end(), snap.bytes.begin() + events.begin, snap.bytes.begin() + events.end);
    out.insert(out.end(), snap.bytes.begin() + smart.begin, snap.bytes.begin() + smart.end);
    add("v2-subsections-reordered", 2, out, Expect::kLoads);
  }
  {
    // Every slot present, the largest counted vector and list a stream may carry.
    NvmeLike s;
    fill_nvme_like(s, 6);
    for (size_t i = 0; i < kQueueSlots; ++i)
      if (!s.queues[i]) s.queues[i] = std::make_unique<Queue>(Queue{i, 1, 2, 3, 4, 5, 0, false});
    s.num_queues = kQueueSlots;
    add_log(s, 256);
    add_events(s, 64);
    add("v2-maximal", 2, saved(s), Expect::kLoads);
  }
  {
    // A subsection of some other device stops this section's loading (QEMU's rule).
    NvmeLike s;
    fill_nvme_like(s, 7);
    Bytes out = saved(s);
    append(out, subsection_header("other-dev/x", 1));
    add("v2-foreign-subsection", 2, out, Expect::kLoadsWithTrailing);
  }

  // ---- valid version-1 streams (no n_log, error_log, serial) ----
  {
    NvmeLike s;
    add("v1-empty", 1, as_version1(s), Expect::kLoads);
  }
  {
    NvmeLike s;
    fill_nvme_like(s, 8);
    add("v1-filled", 1, as_version1(s), Expect::kLoads);
  }
  {
    NvmeLike s;
    fill_everything(s, 9);
    add("v1-subsections", 1, as_version1(s), Expect::kLoads);
  }

  // ---- broken streams ----
  {
    NvmeLike s;
    fill_nvme_like(s, 10);
    add("v3-too-new", 3, saved(s), Expect::kFails);
  }
  {
    NvmeLike s;
    fill_everything(s, 11);
    Bytes out = saved(s);
    out.resize(out.size() / 2);
    add("v2-truncated-in-queues", 2, out, Expect::kFails);
  }
  {
    NvmeLike s;
    fill_everything(s, 12);
    Snapshot snap = snapshot(s);
    // Cut inside the header's version: the name is complete, so the subsection is ours.
    const size_t cut = subsection_range(snap, "nvme-like/events").begin + 2 + 16 + 2;
    Bytes out(snap.bytes.begin(), snap.bytes.begin() + cut);
    add("v2-truncated-subsection-header", 2, out, Expect::kFails);
  }
  {
    NvmeLike s;
    fill_nvme_like(s, 13);
    Snapshot snap = snapshot(s);
    Bytes out = snap.bytes;
    out[field_range(snap, "queues").begin + 25] = 0x32;  // slot 1's marker (slot 0: 1 + 24 bytes)
    add("v2-bad-pointer-marker", 2, out, Expect::kFails);
  }
  {
    NvmeLike s;
    fill_nvme_like(s, 14);
    Snapshot snap = snapshot(s);
    Bytes out = snap.bytes;
    out[field_range(snap, "queues").begin + 24] = 0x02;  // slot 0's irq_enabled
    add("v2-bad-bool", 2, out, Expect::kFails);
  }
  {
    NvmeLike s;
    fill_nvme_like(s, 15);
    s.num_queues = kQueueSlots + 1;  // save does not validate; load must
    add("v2-too-many-queues", 2, saved(s), Expect::kFails);
  }
  {
    NvmeLike s;
    add_log(s, 257);
    add("v2-log-over-max", 2, saved(s), Expect::kFails);
  }
  {
    NvmeLike s;
    add_events(s, 65);
    add("v2-list-over-max", 2, saved(s), Expect::kFails);
  }
  {
    NvmeLike s;
    fill_nvme_like(s, 16);
    Bytes out = saved(s);
    append(out, subsection_header("nvme-like/bogus", 1));
    add("v2-unknown-subsection", 2, out, Expect::kFails);
  }
  {
    NvmeLike s;
    fill_nvme_like(s, 17);
    s.smart_units_read = 1;
    Snapshot snap = snapshot(s);
    const auto& smart = subsection_range(snap, "nvme-like/smart");
    Bytes out = snap.bytes;
    out.insert(out.end(), snap.bytes.begin() + smart.begin, snap.bytes.begin() + smart.end);
    add("v2-duplicate-subsection", 2, out, Expect::kFails);
  }
  {
    NvmeLike s;
    s.smart_units_read = 1;
    Snapshot snap = snapshot(s);
    Bytes out = snap.bytes;
    const auto& smart = subsection_range(snap, "nvme-like/smart");
    out[smart.begin + 2 + 15 + 3] = 2;  // subsection version 2, newer than 1
    add("v2-subsection-too-new", 2, out, Expect::kFails);
  }
  return seeds;
}

// Loads a seed the way the fuzzer does and checks the outcome is the intended one;
// returns the load's status for the listing.
Status verify(const Seed& seed) {
  NvmeLike obj;
  ByteReader r(seed.stream);
  Status st = kNvmeLikeDesc.load(obj, r, seed.version);
  bool loaded = st.ok();
  bool all = r.at_end();
  bool good = seed.expect == Expect::kFails ? !loaded
              : seed.expect == Expect::kLoads ? loaded && all
                                              : loaded && !all;
  if (!good) die(seed.name + ": unexpected outcome: " + st.to_string());
  return st;
}

}  // namespace

// Seeds for the real NVMe controller (selector byte 0x80): saved from controllers driven
// into busy states, each checked to load into a fresh controller; plus one cut short.
void write_controller_seeds(const std::filesystem::path& dir) {
  struct Shape {
    const char* name;
    unsigned queues, commands, aers;
    bool shadow;
    unsigned held;  // commands held on a block error (subsection nvme-state/held-requests)
    unsigned errors = 0;  // Error Information log entries (subsection nvme-state/error-log)
  };
  const Shape shapes[] = {{"nvme-ctrl-fresh", 0, 0, 0, false, 0},
                          {"nvme-ctrl-admin-only", 0, 0, 2, false, 0},
                          {"nvme-ctrl-busy", 2, 6, 2, true, 0},
                          {"nvme-ctrl-wide", 6, 10, 4, false, 0},
                          {"nvme-ctrl-held", 2, 6, 2, true, 3},
                          {"nvme-ctrl-held-only", 1, 0, 0, false, 5},
                          {"nvme-ctrl-error-log", 1, 2, 1, false, 0, 5}};
  for (const Shape& shape : shapes) {
    auto source = ferry::fuzz::FuzzController::make();
    if (!source.ok()) die(source.status().to_string());
    if (shape.queues || shape.aers) {
      Status populated = (*source)->populate(shape.queues, shape.commands, shape.aers,
                                             shape.shadow, shape.held, shape.errors);
      if (!populated.ok()) die(std::string(shape.name) + ": " + populated.to_string());
    }
    if ((*source)->ctrl->state().held.size() != shape.held)
      die(std::string(shape.name) + ": " + std::to_string((*source)->ctrl->state().held.size()) +
          " commands held, not " + std::to_string(shape.held));
    if ((*source)->ctrl->state().error_log.size() != shape.errors)
      die(std::string(shape.name) + ": " +
          std::to_string((*source)->ctrl->state().error_log.size()) + " error log entries, not " +
          std::to_string(shape.errors));
    ByteWriter w;
    Status st = ferry::nvme::kControllerState.save(*(*source)->ctrl, w);
    if (!st.ok()) die(std::string(shape.name) + ": " + st.to_string());
    Bytes bytes = w.to_vector();
    auto check = ferry::fuzz::FuzzController::make();
    if (!check.ok()) die(check.status().to_string());
    ByteReader r(bytes);
    st = ferry::nvme::kControllerState.load(*(*check)->ctrl, r);
    if (!st.ok()) die(std::string(shape.name) + " does not load: " + st.to_string());
    auto write = [&](const std::string& name, const Bytes& body) {
      std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
      out.put(static_cast<char>(0x80));
      out.write(reinterpret_cast<const char*>(body.data()),
                static_cast<std::streamsize>(body.size()));
      if (!out) die("cannot write " + (dir / name).string());
      std::printf("%-32s %5zu bytes\n", name.c_str(), body.size() + 1);
    };
    write(shape.name, bytes);
    if (shape.queues == 2 && shape.held == 0)
      write(std::string(shape.name) + "-cut",
            Bytes(bytes.begin(), bytes.begin() + bytes.size() / 2));
  }
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  for (const Seed& seed : make_seeds()) {
    Status st = verify(seed);
    std::ofstream out(dir / seed.name, std::ios::binary | std::ios::trunc);
    const char selector = static_cast<char>(seed.version - 1);  // 1 + selector % 3 == version
    out.put(selector);
    out.write(reinterpret_cast<const char*>(seed.stream.data()),
              static_cast<std::streamsize>(seed.stream.size()));
    if (!out) die("cannot write " + (dir / seed.name).string());
    std::printf("%-32s %5zu bytes  %s\n", seed.name.c_str(), seed.stream.size() + 1,
                st.to_string().c_str());
  }
  write_controller_seeds(dir);
  return 0;
}
