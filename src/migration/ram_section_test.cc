#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "memory/guest_memory.h"
#include "migration/buffer_channel.h"
#include "migration/ram_section.h"
#include "migration/test_devices.h"
#include "migration/wire.h"
#include "vmstate/test_util.h"

namespace ferry::migration {
namespace {

using memory::kPageSize;
using vmstate::test::hex;
using vmstate::test::to_hex;

std::vector<uint8_t> start_and_everything(RamSaver& saver) {
  BufferChannel ch;
  {
    StreamWriter w(ch);
    saver.write_start_body(w);
    saver.send_everything(w);
    EXPECT_TRUE(w.flush().ok());
  }
  return ch.written();
}

Status load_bodies(RamLoader& loader, std::span<const uint8_t> bytes, size_t max_read = SIZE_MAX) {
  BufferChannel ch(bytes, max_read);
  StreamReader r(ch);
  FERRY_RETURN_IF_ERROR(loader.load_body(r, true));
  return loader.load_body(r, false);
}

TEST(RamSection, GoldenBytesOfATinyBlock) {
  auto src = test::make_ram({{"pc.ram", 2}}, false);
  src[0]->page(1)[0] = 0xaa;
  RamSaver saver(test::raw(src));
  auto bytes = start_and_everything(saver);
  std::string expected =
      // START: total | MEM_SIZE, "pc.ram", length, EOS
      "0000000000002004 06 70632e72616d 0000000000002000 0000000000000010"
      // page 0: ZERO with name, fill 0
      "0000000000000002 06 70632e72616d 00"
      // page 1: PAGE | CONTINUE, 4096 bytes
      "0000000000001028 aa" + std::string(4095 * 2, '0') +
      // EOS
      "0000000000000010";
  EXPECT_EQ(to_hex(bytes), to_hex(hex(expected)));
  EXPECT_EQ(saver.stats().zero_pages, 1u);
  EXPECT_EQ(saver.stats().pages, 1u);
}

TEST(RamSection, RoundTripSeveralBlocksByteExact) {
  auto src = test::make_ram({{"pc.ram", 300}, {"vga.vram", 17}, {"x", 1}}, true);
  auto dst = test::make_ram({{"pc.ram", 300}, {"vga.vram", 17}, {"x", 1}}, false, 99);
  RamSaver saver(test::raw(src));
  auto bytes = start_and_everything(saver);
  RamLoader loader(test::raw(dst));
  ASSERT_TRUE(load_bodies(loader, bytes).ok());
  EXPECT_TRUE(test::same_ram(src, dst));
  EXPECT_EQ(loader.stats().pages + loader.stats().zero_pages, 318u);
  EXPECT_EQ(loader.stats().zero_pages, saver.stats().zero_pages);
  // Also when the channel delivers 7 bytes at a time.
  auto dst2 = test::make_ram({{"pc.ram", 300}, {"vga.vram", 17}, {"x", 1}}, false);
  RamLoader slow(test::raw(dst2));
  ASSERT_TRUE(load_bodies(slow, bytes, 7).ok());
  EXPECT_TRUE(test::same_ram(src, dst2));
}

TEST(RamSection, PagesLeaveInFewWrites) {
  auto src = test::make_ram({{"pc.ram", 2048}}, true);
  RamSaver saver(test::raw(src));
  BufferChannel ch;
  StreamWriter w(ch);
  saver.write_start_body(w);
  saver.send_everything(w);
  ASSERT_TRUE(w.flush().ok());
  EXPECT_LT(ch.writes(), 20u);  // 8 MiB of RAM, 1 MiB buffer: not one write per page
}

TEST(RamSection, BudgetedPassesThenFinalPassWithConcurrentWriter) {
  auto src = test::make_ram({{"pc.ram", 512}, {"rom", 8}}, true);
  auto dst = test::make_ram({{"pc.ram", 512}, {"rom", 8}}, false);
  RamSaver saver(test::raw(src));
  BufferChannel ch;
  std::atomic<bool> stop{false};
  // A guest dirtying RAM while passes go out: data first, then the dirty mark.
  std::thread guest([&] {
    uint64_t seq = 1;
    while (!stop.load()) {
      uint64_t page = (seq * 37) % 512;
      uint64_t value = seq++;
      memory::guest_write(src[0]->page(page) + (seq % 512) * 8,
                          reinterpret_cast<const uint8_t*>(&value), 8);
      src[0]->dirty().mark(page * kPageSize + (seq % 512) * 8, 8);
    }
  });
  {
    StreamWriter w(ch);
    saver.write_start_body(w);
    for (auto* b : test::raw(src)) b->dirty().mark_all();
    for (int pass = 0; pass < 3; ++pass) {
      saver.begin_pass();
      while (!saver.send_pass(w, 64 * 1024)) {
      }
    }
    stop = true;
    guest.join();
    // The VM is stopped: the final pass.
    saver.begin_pass();
    EXPECT_TRUE(saver.send_pass(w, UINT64_MAX));
    ASSERT_TRUE(w.flush().ok());
  }
  BufferChannel in(ch.written());
  StreamReader r(in);
  RamLoader loader(test::raw(dst));
  ASSERT_TRUE(loader.load_body(r, true).ok());
  while (true) {
    auto end = r.at_end();
    ASSERT_TRUE(end.ok());
    if (*end) break;
    Status st = loader.load_body(r, false);
    ASSERT_TRUE(st.ok()) << st.to_string();
  }
  EXPECT_TRUE(test::same_ram(src, dst));
  EXPECT_GE(saver.stats().dirty_syncs, 4u);
}

// The START body of a 1-page block "pc.ram" followed by `records`.
std::vector<uint8_t> stream_with(std::string records) {
  return hex("0000000000001004 06 70632e72616d 0000000000001000 0000000000000010" + records);
}

Status load_tiny(std::string records) {
  auto dst = test::make_ram({{"pc.ram", 1}}, false);
  RamLoader loader(test::raw(dst));
  auto bytes = stream_with(std::move(records));
  return load_bodies(loader, bytes);
}

void expect_error(std::string records, std::string_view needle) {
  Status st = load_tiny(std::move(records));
  ASSERT_FALSE(st.ok()) << "expected an error containing: " << needle;
  EXPECT_NE(st.to_string().find(needle), std::string::npos) << st.to_string();
}

TEST(RamSection, LoaderAcceptsMultifdFlushAndContinueAcrossBodies) {
  EXPECT_TRUE(load_tiny("0000000000000200 0000000000000010").ok());
  // Block named in the START body... then CONTINUE in the next one is fine.
  auto dst = test::make_ram({{"pc.ram", 1}}, false);
  RamLoader loader(test::raw(dst));
  auto bytes = hex(
      "0000000000001004 06 70632e72616d 0000000000001000"
      "0000000000000002 06 70632e72616d 00 0000000000000010"
      "0000000000000022 00 0000000000000010");
  ASSERT_TRUE(load_bodies(loader, bytes).ok());
  EXPECT_EQ(loader.stats().zero_pages, 2u);
}

TEST(RamSection, LoaderRefusesWhatItCannotTrust) {
  expect_error("0000000000000002 06 70632e72616d 05 0000000000000010",
               "Found a zero page with value 5");
  expect_error("0000000000001002 06 70632e72616d 00 0000000000000010",
               "Illegal RAM offset 0x1000 in block \"pc.ram\"");
  expect_error("0000000000000002 03 666f6f 00 0000000000000010", "Unknown ramblock \"foo\"");
  expect_error("0000000000000022 00 0000000000000010", "no block was named before");
  expect_error("0000000000000040 0000000000000010", "unsupported RAM record flags 0x40");
  expect_error("0000000000000008 06 70632e72616d 0102", "while reading RAM page data");
  expect_error("0000000000001004 06 70632e72616d 0000000000001000", "outside the START");

  auto dst = test::make_ram({{"pc.ram", 2}}, false);
  RamLoader loader(test::raw(dst));
  Status st = load_bodies(loader, stream_with("0000000000000010"));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("stream has 0x1000 bytes of RAM, local is 0x2000"),
            std::string::npos)
      << st.to_string();

  auto two = test::make_ram({{"pc.ram", 1}, {"b", 1}}, false);
  RamLoader mismatch(test::raw(two));
  st = load_bodies(mismatch, hex("0000000000002004 06 70632e72616d 0000000000002000"
                                 "0000000000000010 0000000000000010"));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("Length mismatch: RAM block \"pc.ram\": 0x2000 in stream != "
                                "0x1000 local"),
            std::string::npos)
      << st.to_string();
}

}  // namespace
}  // namespace ferry::migration
