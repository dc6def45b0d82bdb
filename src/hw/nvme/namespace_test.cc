#include "hw/nvme/namespace.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "spec/nvme.h"

namespace ferry::nvme {
namespace {

namespace sn = spec::nvme;

uint64_t le(const uint8_t* p, unsigned size) {
  uint64_t v = 0;
  for (unsigned i = size; i-- > 0;) v = v << 8 | p[i];
  return v;
}

// A raw image of a given size in a temporary file, removed afterwards.
class TempImage {
 public:
  explicit TempImage(uint64_t size) {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir ? dir : "/tmp") + "/ferry-ns-test-XXXXXX";
    int fd = mkstemp(path_.data());
    if (fd >= 0) {
      ok_ = ftruncate(fd, static_cast<off_t>(size)) == 0;
      close(fd);
    }
  }
  ~TempImage() { unlink(path_.c_str()); }
  bool ok() const { return ok_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool ok_ = false;
};

class NamespaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto l = EventLoop::create();
    ASSERT_TRUE(l.ok()) << l.status().to_string();
    loop = std::move(*l);
  }

  // Opens a backend over a fresh image of `size` bytes.
  std::unique_ptr<block::BlockBackend> backend(uint64_t size, bool read_only = false) {
    images.push_back(std::make_unique<TempImage>(size));
    EXPECT_TRUE(images.back()->ok());
    block::DriveConfig config;
    config.id = "d0";
    config.file = images.back()->path();
    config.read_only = read_only;
    config.aio = block::AioMode::kThreads;
    config.aio_given = true;
    block::BackendTuning tuning;
    tuning.worker_threads = 1;
    auto b = block::BlockBackend::open(*loop, config, tuning);
    EXPECT_TRUE(b.ok()) << b.status().to_string();
    return b.ok() ? std::move(*b) : nullptr;
  }

  std::unique_ptr<Namespace> make(block::BlockBackend* b, uint32_t lbs, uint64_t eui64 = 0) {
    NamespaceConfig config;
    config.backend = b;
    config.logical_block_size = lbs;
    config.eui64 = eui64;
    for (uint8_t i = 0; i < 16; ++i) config.uuid[i] = static_cast<uint8_t>(0xa0 + i);
    auto ns = Namespace::create(config);
    EXPECT_TRUE(ns.ok()) << ns.status().to_string();
    return ns.ok() ? std::move(*ns) : nullptr;
  }

  std::unique_ptr<EventLoop> loop;
  std::vector<std::unique_ptr<TempImage>> images;
};

TEST_F(NamespaceTest, Geometry) {
  auto b = backend(1 << 20);
  ASSERT_TRUE(b);
  auto small = make(b.get(), 512);
  ASSERT_TRUE(small);
  EXPECT_EQ(small->nsid(), 1u);
  EXPECT_EQ(small->lba_size(), 512u);
  EXPECT_EQ(small->lba_shift(), 9u);
  EXPECT_EQ(small->lba_count(), 2048u);
  EXPECT_FALSE(small->read_only());
  EXPECT_EQ(&small->backend(), b.get());

  auto big = make(b.get(), 4096);
  ASSERT_TRUE(big);
  EXPECT_EQ(big->lba_shift(), 12u);
  EXPECT_EQ(big->lba_count(), 256u);

  auto ro = backend(1 << 20, /*read_only=*/true);
  ASSERT_TRUE(ro);
  auto ro_ns = make(ro.get(), 512);
  ASSERT_TRUE(ro_ns);
  EXPECT_TRUE(ro_ns->read_only());
}

TEST_F(NamespaceTest, CreationErrorsNameTheValue) {
  auto b = backend(1 << 20);
  ASSERT_TRUE(b);
  NamespaceConfig config;
  config.backend = b.get();

  config.logical_block_size = 1000;
  auto bad_lbs = Namespace::create(config);
  ASSERT_FALSE(bad_lbs.ok());
  EXPECT_NE(bad_lbs.status().message().find("logical_block_size 1000 is not 512 or 4096"),
            std::string::npos)
      << bad_lbs.status().to_string();

  config.logical_block_size = 512;
  for (uint32_t nsid : {0u, 257u}) {
    config.nsid = nsid;
    auto bad = Namespace::create(config);
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("nsid " + std::to_string(nsid)), std::string::npos)
        << bad.status().to_string();
  }
  config.nsid = 256;
  EXPECT_TRUE(Namespace::create(config).ok());

  config.backend = nullptr;
  EXPECT_FALSE(Namespace::create(config).ok());

  auto odd = backend((1 << 20) + 512);
  ASSERT_TRUE(odd);
  config.backend = odd.get();
  config.logical_block_size = 4096;
  auto bad_size = Namespace::create(config);
  ASSERT_FALSE(bad_size.ok());
  EXPECT_NE(bad_size.status().message().find("drive 'd0' size 1049088"), std::string::npos)
      << bad_size.status().to_string();
  config.logical_block_size = 512;
  EXPECT_TRUE(Namespace::create(config).ok());

  auto empty = backend(0);
  ASSERT_TRUE(empty);
  config.backend = empty.get();
  EXPECT_FALSE(Namespace::create(config).ok());
}

TEST_F(NamespaceTest, IdentifyNamespace512) {
  auto b = backend(1 << 20);
  ASSERT_TRUE(b);
  auto ns = make(b.get(), 512, 0x0011223344556677);
  ASSERT_TRUE(ns);
  std::array<uint8_t, 4096> id;
  id.fill(0xff);  // everything is written
  ns->identify(id);
  EXPECT_EQ(le(&id[sn::kIdNsNsze], 8), 2048u);
  EXPECT_EQ(le(&id[sn::kIdNsNcap], 8), 2048u);
  EXPECT_EQ(le(&id[sn::kIdNsNuse], 8), 2048u);
  EXPECT_EQ(id[sn::kIdNsNsfeat], 0x10) << "OPTPERF only: DULBE is not offered";
  EXPECT_EQ(id[sn::kIdNsNlbaf], 7);  // eight formats
  EXPECT_EQ(id[sn::kIdNsFlbas], 0);  // 512 bytes, no metadata
  EXPECT_EQ(id[sn::kIdNsMc], 0x03);
  EXPECT_EQ(id[sn::kIdNsDpc], 0x1f);
  EXPECT_EQ(id[sn::kIdNsDps], 0);
  EXPECT_EQ(id[sn::kIdNsNmic], 0);
  EXPECT_EQ(id[sn::kIdNsDlfeat], 0x01);
  EXPECT_EQ(le(&id[sn::kIdNsNpdg], 2), 7u);  // NPDG: 4 KiB in 512-byte blocks, 0's based
  EXPECT_EQ(le(&id[sn::kIdNsNpda], 2), 7u);  // NPDA
  EXPECT_EQ(le(&id[sn::kIdNsNvmcap], 16), 0u);
  // EUI64 is big-endian.
  const uint8_t eui[8] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77};
  EXPECT_EQ(std::memcmp(&id[sn::kIdNsEui64], eui, 8), 0);
  // LBA formats: MS 15:0, LBADS 23:16.
  const uint32_t lbaf[8] = {0x090000, 0x090008, 0x090010, 0x090040,
                            0x0c0000, 0x0c0008, 0x0c0010, 0x0c0040};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(le(&id[sn::kIdNsLbaf0 + 4 * i], 4), lbaf[i]) << i;
  for (size_t i = sn::kIdNsLbaf0 + 32; i < id.size(); ++i) ASSERT_EQ(id[i], 0) << i;
}

TEST_F(NamespaceTest, IdentifyNamespace4096) {
  auto b = backend(1 << 20);
  ASSERT_TRUE(b);
  auto ns = make(b.get(), 4096);
  ASSERT_TRUE(ns);
  std::array<uint8_t, 4096> id;
  ns->identify(id);
  EXPECT_EQ(le(&id[sn::kIdNsNsze], 8), 256u);
  EXPECT_EQ(id[sn::kIdNsFlbas], 4);
  uint32_t selected = static_cast<uint32_t>(le(&id[sn::kIdNsLbaf0 + 4 * 4], 4));
  EXPECT_EQ(1u << ((selected >> sn::kLbafLbadsShift) & 0xff), 4096u);
  EXPECT_EQ(selected & 0xffff, 0u);
  EXPECT_EQ(le(&id[sn::kIdNsNpdg], 2), 0u);
  EXPECT_EQ(le(&id[sn::kIdNsEui64], 8), 0u);
}

TEST_F(NamespaceTest, IdentifyDescriptors) {
  auto b = backend(1 << 20);
  ASSERT_TRUE(b);
  auto ns = make(b.get(), 512);
  ASSERT_TRUE(ns);
  std::array<uint8_t, 4096> d;
  d.fill(0xff);
  ns->identify_descriptors(d);
  // UUID (type 3, 16 bytes), then CSI (type 4, 1 byte) = NVM, then the zero terminator.
  EXPECT_EQ(d[0], sn::kNidtUuid);
  EXPECT_EQ(d[1], 16);
  EXPECT_EQ(d[2], 0);
  EXPECT_EQ(d[3], 0);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(d[4 + i], 0xa0 + i);
  EXPECT_EQ(d[20], sn::kNidtCsi);
  EXPECT_EQ(d[21], 1);
  EXPECT_EQ(d[24], sn::kCsiNvm);
  for (size_t i = 25; i < d.size(); ++i) ASSERT_EQ(d[i], 0) << i;

  auto with_eui = make(b.get(), 512, 0x0102030405060708);
  ASSERT_TRUE(with_eui);
  with_eui->identify_descriptors(d);
  EXPECT_EQ(d[20], sn::kNidtEui64);
  EXPECT_EQ(d[21], 8);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(d[24 + i], i + 1);
  EXPECT_EQ(d[32], sn::kNidtCsi);
  EXPECT_EQ(d[33], 1);
  EXPECT_EQ(d[36], sn::kCsiNvm);
  EXPECT_EQ(d[37], 0);
}

TEST_F(NamespaceTest, IdentifyNvmSpecificIsZero) {
  auto b = backend(1 << 20);
  ASSERT_TRUE(b);
  auto ns = make(b.get(), 4096);
  ASSERT_TRUE(ns);
  std::array<uint8_t, 4096> d;
  d.fill(0xff);
  ns->identify_nvm_specific(d);
  for (size_t i = 0; i < d.size(); ++i) ASSERT_EQ(d[i], 0) << i;
}

TEST_F(NamespaceTest, RangeChecks) {
  auto b = backend(1 << 20);
  ASSERT_TRUE(b);
  auto ns = make(b.get(), 512);
  ASSERT_TRUE(ns);
  const uint16_t out = sn::kLbaOutOfRange | sn::kStatusDnr;
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(ns->check_range(0, 1), 0);
  EXPECT_EQ(ns->check_range(0, 2048), 0);
  EXPECT_EQ(ns->check_range(2047, 1), 0);
  EXPECT_EQ(ns->check_range(2048, 0), 0);  // empty range at the end, as QEMU allows
  EXPECT_EQ(ns->check_range(2048, 1), out);
  EXPECT_EQ(ns->check_range(1, 2048), out);
  EXPECT_EQ(ns->check_range(0, 2049), out);
  EXPECT_EQ(ns->check_range(max, 2), out);  // slba + nlb wraps
  EXPECT_EQ(ns->check_range(2, max), out);
  EXPECT_EQ(ns->check_range(max, max), out);
}

}  // namespace
}  // namespace ferry::nvme
