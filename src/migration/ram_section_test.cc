#include <gtest/gtest.h>

#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
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

// Resident pages of a block, as the kernel sees them.
size_t resident_pages(const memory::RamBlock& b) {
  std::vector<unsigned char> vec(b.pages());
  EXPECT_EQ(::mincore(b.host(), b.size(), vec.data()), 0);
  return static_cast<size_t>(std::count_if(vec.begin(), vec.end(), [](unsigned char c) { return c & 1; }));
}

// A ZERO record for a page nobody has written leaves it untouched: testing it for zeros
// would fault it in (that cost most of the downtime of a mostly empty VM). A page written
// before (through a path that marks it dirty) is still checked and cleared.
TEST(RamSection, ZeroRecordsLeaveUnwrittenPagesUntouched) {
  auto src = test::make_ram({{"pc.ram", 64}}, false);
  src[0]->page(3)[7] = 0x5a;
  RamSaver saver(test::raw(src));
  auto bytes = start_and_everything(saver);

  auto dst = test::make_ram({{"pc.ram", 64}}, false);
  memory::RamBlock& b = *dst[0];
  ASSERT_TRUE(b.page_known_zero(10));
  b.page(10)[100] = 0xee;  // a write on the destination before the stream arrives...
  b.dirty().mark_page(10);  // ...marked, as every write path does
  ASSERT_FALSE(b.page_known_zero(10));
  RamLoader loader(test::raw(dst));
  ASSERT_TRUE(load_bodies(loader, bytes).ok());
  // Page 3 (data) and page 10 (written, then cleared) are the only ones faulted in.
  EXPECT_EQ(resident_pages(b), 2u);
  EXPECT_TRUE(test::same_ram(src, dst));
  EXPECT_EQ(b.page(10)[100], 0);
}

// Once a bitmap has been synced (the block was a migration source), a clear bit no longer
// proves a page unwritten: every ZERO record is then checked against the page itself.
TEST(RamSection, ASyncedBitmapProvesNothing) {
  auto dst = test::make_ram({{"pc.ram", 4}}, false);
  memory::RamBlock& b = *dst[0];
  memory::PageBitmap taken;
  b.page(2)[0] = 1;
  b.dirty().mark_page(2);
  b.dirty().sync(taken);
  EXPECT_FALSE(b.page_known_zero(1));
  EXPECT_FALSE(b.page_known_zero(2));

  auto src = test::make_ram({{"pc.ram", 4}}, false);
  RamSaver saver(test::raw(src));
  auto bytes = start_and_everything(saver);
  RamLoader loader(test::raw(dst));
  ASSERT_TRUE(load_bodies(loader, bytes).ok());
  EXPECT_TRUE(test::same_ram(src, dst));
}

// A file that already has content is not known to be zero.
TEST(RamSection, AnExistingBackingFileIsNotKnownZero) {
  char path[] = "/tmp/ferry-ram-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> content(2 * kPageSize, 0x11);
  ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  ::close(fd);
  auto existing = memory::RamBlock::create({.idstr = "pc.ram", .size = 2 * kPageSize,
                                            .backing = memory::RamBacking::kFile,
                                            .mem_path = path});
  ::unlink(path);
  ASSERT_TRUE(existing.ok());
  EXPECT_FALSE((*existing)->page_known_zero(0));

  auto src = test::make_ram({{"pc.ram", 2}}, false);
  RamSaver saver(test::raw(src));
  auto bytes = start_and_everything(saver);
  RamLoader loader({existing->get()});
  ASSERT_TRUE(load_bodies(loader, bytes).ok());
  EXPECT_EQ((*existing)->page(1)[5], 0);
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
  // A corrupted name is shown escaped, never as raw bytes (in the page record and in the list).
  expect_error("0000000000000002 04 66006f0a 00 0000000000000010",
               "Unknown ramblock \"f\\x00o\\x0a\" at offset");
  expect_error("0000000000000022 00 0000000000000010", "no block was named before");
  expect_error("0000000000000040 0000000000000010", "unsupported RAM record flags 0x40");
  expect_error("0000000000000008 06 70632e72616d 0102", "while reading RAM page data");
  expect_error("0000000000001004 06 70632e72616d 0000000000001000", "outside the START");
  // A name running past the end of the stream (the look-ahead must not read past it).
  expect_error("0000000000000008 ff 7063", "while reading RAM block name (needed 255 bytes");

  auto dst = test::make_ram({{"pc.ram", 2}}, false);
  RamLoader loader(test::raw(dst));
  Status st = load_bodies(loader, stream_with("0000000000000010"));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("stream has 0x1000 bytes of RAM, local is 0x2000"),
            std::string::npos)
      << st.to_string();

  auto one = test::make_ram({{"pc.ram", 1}}, false);
  RamLoader corrupt_list(test::raw(one));
  st = load_bodies(corrupt_list, hex("0000000000001004 03 66ff00 0000000000001000"
                                     "0000000000000010"));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find("Unknown ramblock \"f\\xff\\x00\" in the block list"),
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


// A 4-page "pc.ram" whose every byte is 0x5a before loading.
std::vector<std::unique_ptr<memory::RamBlock>> canary_ram() {
  auto ram = test::make_ram({{"pc.ram", 4}}, false);
  std::memset(ram[0]->host(), 0x5a, ram[0]->size());
  return ram;
}

size_t bytes_changed(const memory::RamBlock& b, size_t begin, size_t end) {
  size_t n = 0;
  for (size_t i = begin; i < end; ++i) n += b.host()[i] != 0x5a;
  return n;
}

// START body of a 4-page "pc.ram", then `records` (hex).
std::vector<uint8_t> four_pages_with(const std::string& records) {
  return hex("0000000000004004 06 70632e72616d 0000000000004000 0000000000000010" + records);
}

std::string page_of(uint8_t value) {
  return fmt::format("{:02x}", value) + std::string(4095 * 2, '0');
}

TEST(RamSection, PagePayloadLandsOnlyWhereItsHeaderSays) {
  // PAGE at 0x2000 (named), then PAGE|CONTINUE at 0x0, then EOS.
  auto bytes = four_pages_with("0000000000002008 06 70632e72616d " + page_of(0x11) +
                               "0000000000000028 " + page_of(0x22) + "0000000000000010");
  for (size_t max_read : {size_t{1}, size_t{9}, size_t{4100}, size_t{5000}, SIZE_MAX}) {
    SCOPED_TRACE(max_read);
    auto dst = canary_ram();
    RamLoader loader(test::raw(dst));
    Status st = load_bodies(loader, bytes, max_read);
    ASSERT_TRUE(st.ok()) << st.to_string();
    const memory::RamBlock& b = *dst[0];
    EXPECT_EQ(b.host()[0x2000], 0x11);
    EXPECT_EQ(b.host()[0x0], 0x22);
    EXPECT_EQ(bytes_changed(b, 0x0000, 0x1000), 4096u);  // the two pages named: all new
    EXPECT_EQ(bytes_changed(b, 0x2000, 0x3000), 4096u);
    EXPECT_EQ(bytes_changed(b, 0x1000, 0x2000), 0u);  // the others: untouched
    EXPECT_EQ(bytes_changed(b, 0x3000, 0x4000), 0u);
  }
}

TEST(RamSection, RefusedHeaderWritesNoByteOfItsPayload) {
  // Each record below is refused while its 4096-byte payload follows in the stream.
  for (std::string bad : {"0000000000004008 06 70632e72616d ",   // offset past the block
                          "0000000000000008 03 666f6f ",         // unknown block
                          "0000000000000028 "}) {                // CONTINUE, nothing named
    SCOPED_TRACE(bad);
    auto bytes = four_pages_with(bad + page_of(0x33) + "0000000000000010");
    for (size_t max_read : {size_t{1}, SIZE_MAX}) {
      auto ram = canary_ram();
      RamLoader l(test::raw(ram));
      EXPECT_FALSE(load_bodies(l, bytes, max_read).ok());
      EXPECT_EQ(bytes_changed(*ram[0], 0, ram[0]->size()), 0u);
    }
  }
}

TEST(RamSection, StreamCutInsideAPageIsNamed) {
  // Over a real socket (readv into the page): header, then 100 bytes of the page.
  auto bytes = four_pages_with("0000000000001008 06 70632e72616d " + page_of(0x44));
  size_t cut = bytes.size() - 4096 + 100;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  FdChannel out(sv[0], "out", true), in(sv[1], "in", true);
  ASSERT_TRUE(out.write_all(std::span(bytes.data(), cut)).ok());
  ASSERT_TRUE(out.shutdown_write().ok());
  auto dst = canary_ram();
  RamLoader loader(test::raw(dst));
  StreamReader r(in);
  ASSERT_TRUE(loader.load_body(r, true).ok());
  Status st = loader.load_body(r, false);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.to_string().find(fmt::format("stream ends at offset {} while reading RAM page "
                                            "data (needed 4096 bytes, 100 left)",
                                            cut)),
            std::string::npos)
      << st.to_string();
  // Only the named page received bytes.
  EXPECT_EQ(bytes_changed(*dst[0], 0, 0x1000), 0u);
  EXPECT_EQ(bytes_changed(*dst[0], 0x2000, 0x4000), 0u);
}

TEST(RamSection, PagesLeaveStraightFromGuestRam) {
  auto src = test::make_ram({{"pc.ram", 64}}, true);
  RamSaver saver(test::raw(src));
  struct Spy final : Channel {
    std::vector<const void*> bases;
    std::string name_ = "spy";
    Result<size_t> read_some(std::span<uint8_t>) override { return size_t{0}; }
    Status write_all(std::span<const uint8_t>) override { return {}; }
    Status writev_all(std::span<iovec> iov) override {
      for (const iovec& v : iov) bases.push_back(v.iov_base);
      return {};
    }
    Status shutdown_write() override { return {}; }
    Status close() override { return {}; }
    const std::string& name() const override { return name_; }
  } spy;
  {
    StreamWriter w(spy);
    saver.write_start_body(w);
    saver.send_everything(w);
    ASSERT_TRUE(w.flush().ok());
  }
  ASSERT_GT(saver.stats().pages, 0u);
  size_t from_ram = 0;
  for (uint64_t p = 0; p < src[0]->pages(); ++p)
    from_ram += std::count(spy.bases.begin(), spy.bases.end(), src[0]->page(p));
  EXPECT_EQ(from_ram, saver.stats().pages);  // every PAGE payload, no zero page
}

}  // namespace
}  // namespace ferry::migration
