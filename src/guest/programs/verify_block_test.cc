// The verify workload's pure parts: block format, PRNG, latency histogram, option parsing
// and the memory layout (the program itself runs against a real machine in
// tests/guest_verify_test.cc).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "base/crc32c.h"
#include "guest/programs/verify.h"
#include "guest/programs/verify_block.h"
#include "guest/programs/verify_random.h"

namespace ferry::guest {
namespace {

using namespace verify;

TEST(VerifyBlock, WrittenBlockChecksClean) {
  std::vector<uint8_t> block(4096);
  fill_block(block, 80, 3, 42);
  EXPECT_EQ(check_block(block, 80, 3, 42), std::nullopt);
  BlockHeader h = parse_header(block);
  EXPECT_EQ(h.magic, kBlockMagic);
  EXPECT_EQ(h.lba, 80u);
  EXPECT_EQ(h.seed, 42u);
  EXPECT_EQ(h.generation, 3u);
  EXPECT_EQ(h.crc, crc32c(std::span<const uint8_t>(block).subspan(kBlockHeaderSize)));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(block.data()), 8), "FRYVRFY1");
}

TEST(VerifyBlock, EveryDifferenceIsNamed) {
  std::vector<uint8_t> block(512);
  fill_block(block, 8, 2, 7);
  auto wrong_lba = check_block(block, 16, 2, 7);
  ASSERT_TRUE(wrong_lba);
  EXPECT_EQ(*wrong_lba, "expected header LBA 16, found LBA 8");
  auto wrong_generation = check_block(block, 8, 3, 7);
  ASSERT_TRUE(wrong_generation);
  EXPECT_EQ(*wrong_generation, "expected generation 3, found generation 2");
  auto wrong_seed = check_block(block, 8, 2, 9);
  ASSERT_TRUE(wrong_seed);
  EXPECT_EQ(*wrong_seed, "expected seed 9, found seed 7");
  block[300] ^= 1;
  auto damaged = check_block(block, 8, 2, 7);
  ASSERT_TRUE(damaged);
  EXPECT_NE(damaged->find("payload crc32c"), std::string::npos) << *damaged;
  std::vector<uint8_t> zeros(512, 0);
  auto foreign = check_block(zeros, 8, 2, 7);
  ASSERT_TRUE(foreign);
  EXPECT_NE(foreign->find("magic"), std::string::npos);
}

TEST(VerifyBlock, PayloadDependsOnLbaGenerationAndSeed) {
  std::vector<uint8_t> a(4096), b(4096), c(4096), d(4096);
  fill_block(a, 8, 1, 1);
  fill_block(b, 16, 1, 1);
  fill_block(c, 8, 2, 1);
  fill_block(d, 8, 1, 2);
  auto payload = [](const std::vector<uint8_t>& v) {
    return std::vector<uint8_t>(v.begin() + kBlockHeaderSize, v.end());
  };
  EXPECT_NE(payload(a), payload(b));
  EXPECT_NE(payload(a), payload(c));
  EXPECT_NE(payload(a), payload(d));
  std::vector<uint8_t> again(4096);
  fill_block(again, 8, 1, 1);
  EXPECT_EQ(a, again);
}

TEST(VerifyBlock, GenerationsSkipZero) {
  EXPECT_EQ(next_generation(0), 1u);
  EXPECT_EQ(next_generation(41), 42u);
  EXPECT_EQ(next_generation(UINT32_MAX), 1u);
}

TEST(VerifyRandom, Splitmix64KnownValues) {
  // Reference outputs of splitmix64 seeded with 0.
  uint64_t state = 0;
  EXPECT_EQ(splitmix64_next(state), 0xe220a8397b1dcdafull);
  EXPECT_EQ(splitmix64_next(state), 0x6e789e6aa1b965f4ull);
  uint64_t s = 5;
  for (int i = 0; i < 1000; ++i) EXPECT_LT(random_below(s, 7), 7u);
}

TEST(VerifyLatency, BucketsAreContiguousAndNarrow) {
  EXPECT_EQ(latency_bucket(0), 0u);
  EXPECT_EQ(latency_bucket(31), 31u);
  EXPECT_EQ(latency_bucket(32), 32u);
  EXPECT_EQ(latency_bucket(63), 63u);
  EXPECT_EQ(latency_bucket(64), 64u);   // [64, 66)
  EXPECT_EQ(latency_bucket(65), 64u);
  EXPECT_EQ(latency_bucket(UINT64_MAX), kLatencyBuckets - 1);
  // Every bucket starts where the previous one ends, holds exactly the values that map to
  // it, and is at most 1/32 of its values wide.
  for (unsigned i = 0; i + 1 < kLatencyBuckets; ++i) {
    uint64_t low = latency_bucket_low(i), width = latency_bucket_width(i);
    ASSERT_EQ(low + width, latency_bucket_low(i + 1)) << i;
    ASSERT_EQ(latency_bucket(low), i) << i;
    ASSERT_EQ(latency_bucket(low + width - 1), i) << i;
    if (low >= kLatencySubBuckets) {
      ASSERT_LE(width * 32, low) << i;
    }
  }
  EXPECT_EQ(latency_bucket_low(kLatencyBuckets - 1) + latency_bucket_width(kLatencyBuckets - 1),
            uint64_t{1} << kLatencyRangeBits);
}

// The exact percentile of `samples` (the rank-th smallest, rank = ceil(p * n)).
uint64_t exact_percentile(std::vector<uint64_t> samples, double p) {
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(samples.size())));
  rank = std::clamp<size_t>(rank, 1, samples.size());
  std::nth_element(samples.begin(), samples.begin() + (rank - 1), samples.end());
  return samples[rank - 1];
}

void expect_percentiles_close(const std::vector<uint64_t>& samples, double tolerance) {
  LatencyHistogram h{};
  for (uint64_t s : samples) ++h[latency_bucket(s)];
  for (double p : {0.5, 0.9, 0.99, 0.999}) {
    double exact = static_cast<double>(exact_percentile(samples, p));
    double got = static_cast<double>(latency_percentile(h, p));
    EXPECT_NEAR(got, exact, exact * tolerance) << "p" << p * 100;
  }
}

TEST(VerifyLatency, PercentilesOfKnownDistributionsWithinTwoPercent) {
  std::mt19937_64 rng(7);
  // Log-normal around 80 us with a long tail (like device latencies), 200,000 samples.
  std::lognormal_distribution<double> lognormal(std::log(80'000.0), 0.9);
  std::vector<uint64_t> samples(200'000);
  for (uint64_t& s : samples) s = static_cast<uint64_t>(lognormal(rng));
  expect_percentiles_close(samples, 0.02);
  // Uniform over [1 us, 3 ms).
  std::uniform_int_distribution<uint64_t> uniform(1'000, 3'000'000);
  for (uint64_t& s : samples) s = uniform(rng);
  expect_percentiles_close(samples, 0.02);
  // Two clusters: 99% at ~3 us, 1% at ~5 ms: p99.9 sits in the far one.
  std::normal_distribution<double> near(3'000, 100), far(5'000'000, 200'000);
  for (size_t i = 0; i < samples.size(); ++i)
    samples[i] = static_cast<uint64_t>(std::max(1.0, i % 100 == 0 ? far(rng) : near(rng)));
  expect_percentiles_close(samples, 0.02);
}

TEST(VerifyLatency, APointMassIsReportedWithinItsBucket) {
  // Power-of-two buckets put every percentile of 3,000 ns somewhere in [2,048, 4,096).
  LatencyHistogram h{};
  for (int i = 0; i < 1000; ++i) ++h[latency_bucket(3000)];
  for (double p : {0.5, 0.99, 0.999})
    EXPECT_NEAR(static_cast<double>(latency_percentile(h, p)), 3000.0, 3000.0 / 32) << p;
  EXPECT_EQ(latency_percentile(LatencyHistogram{}, 0.5), 0u);
  // Beyond the range: the last bucket, not an overflow.
  LatencyHistogram huge{};
  ++huge[latency_bucket(UINT64_MAX)];
  EXPECT_GE(latency_percentile(huge, 0.5), latency_bucket_low(kLatencyBuckets - 1));
}

Result<VerifyConfig> parse(std::string_view text) {
  auto opts = parse_opts(verify_schema(), text);
  if (!opts.ok()) return opts.take_status();
  return verify_config(*opts);
}

TEST(VerifyOptions, Defaults) {
  auto c = parse("verify,device=nvme0");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->device, "nvme0");
  EXPECT_EQ(c->rw, Mode::kRandWrite);
  EXPECT_EQ(c->block_size, 4096u);
  EXPECT_EQ(c->iodepth, 16u);
  EXPECT_EQ(c->nsid, 1u);
  EXPECT_EQ(c->size, 0u);
  EXPECT_EQ(c->runtime_ms, 0u);
  EXPECT_EQ(c->loops, 0u);
}

TEST(VerifyOptions, EveryProperty) {
  auto c = parse("verify,device=d,nsid=2,rw=randrw,bs=16k,iodepth=32,size=64M,runtime=2m,"
                 "loops=3,seed=99,verify=crc32c");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->rw, Mode::kRandRw);
  EXPECT_EQ(c->nsid, 2u);
  EXPECT_EQ(c->block_size, 16384u);
  EXPECT_EQ(c->iodepth, 32u);
  EXPECT_EQ(c->size, 64u << 20);
  EXPECT_EQ(c->runtime_ms, 120000u);
  EXPECT_EQ(c->loops, 3u);
  EXPECT_EQ(c->seed, 99u);
  EXPECT_EQ(parse("runtime=500ms")->runtime_ms, 500u);
  EXPECT_EQ(parse("runtime=7")->runtime_ms, 7000u);
}

TEST(VerifyOptions, ErrorsNameThePropertyAndValue) {
  struct Case {
    const char* text;
    const char* expected;
  };
  for (const Case& c : {
           Case{"verify,bs=1000",
                "Parameter 'bs' expects a multiple of 512 from 512 to 1M, found '1000'"},
           Case{"verify,bs=2M", "'bs'"},
           Case{"verify,iodepth=0",
                "Parameter 'iodepth' expects a number from 1 to 1023, found '0'"},
           Case{"verify,iodepth=1024", "found '1024'"},
           Case{"verify,rw=trim", "'trim'"},
           Case{"verify,size=6000",
                "Parameter 'size' expects a non-zero multiple of bs=4096, found '6000'"},
           Case{"verify,runtime=soon",
                "Parameter 'runtime' expects a duration like 30s, 500ms or 2m, found 'soon'"},
           Case{"verify,runtime=5d", "found '5d'"},
           Case{"verify,loops=0", "Parameter 'loops' expects a number of at least 1, found '0'"},
           Case{"verify,nsid=0", "Parameter 'nsid'"},
           Case{"verify,verify=md5", "'md5'"},
           Case{"verify,colour=red", "'colour'"},
           Case{"fio,bs=4k", "'fio'"},
       }) {
    auto config = parse(c.text);
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_NE(config.status().to_string().find(c.expected), std::string::npos)
        << c.text << " -> " << config.status().to_string();
    EXPECT_NE(config.status().to_string().find("-guest verify"), std::string::npos)
        << config.status().to_string();
  }
}

TEST(VerifyLayout, FixedRegionsInsideTheDmaRange) {
  VerifyConfig c;
  c.dma_base = 0x1000000;
  c.iodepth = 16;
  c.block_size = 4096;
  VerifyLayout small = verify_layout(c);
  EXPECT_EQ(small.admin_sq, 0x1000000u);
  EXPECT_EQ(small.prp_lists, 0u);
  EXPECT_EQ(small.buffer_stride, 4096u);
  EXPECT_EQ(verify_dma_bytes(c), small.end - c.dma_base);
  c.block_size = 64 * 1024;
  VerifyLayout big = verify_layout(c);
  EXPECT_NE(big.prp_lists, 0u);
  EXPECT_EQ(big.end, big.prp_lists + 16 * 4096);
  EXPECT_EQ(big.prp_lists, big.buffers + 16 * 65536);

  c.dma_size = verify_dma_bytes(c) - 4096;
  auto refused = VerifyProgram::create(c);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().to_string().find("must be page-aligned and hold"), std::string::npos);
  c.dma_size += 4096;
  EXPECT_TRUE(VerifyProgram::create(c).ok());
}

TEST(VerifyState, DescriptionChecks) {
  VerifyConfig c;
  c.dma_base = 0x1000000;
  c.dma_size = verify_dma_bytes(c);
  auto program = VerifyProgram::create(c);
  ASSERT_TRUE(program.ok());
  auto binding = (*program)->migration_state();
  EXPECT_EQ(binding->vmsd_name(), "guest-verify");
  EXPECT_EQ(binding->version(), 3);
  Status checked = binding->check();
  EXPECT_TRUE(checked.ok()) << checked.to_string();
  // A fresh program saves (with its vmdesc) and a fresh program with the same options loads it.
  ByteWriter w;
  vmstate::Json vmdesc = vmstate::Json::object();
  Status saved = binding->save(w, vmdesc);
  ASSERT_TRUE(saved.ok()) << saved.to_string();
  EXPECT_EQ(vmdesc["vmsd_name"], "guest-verify") << vmdesc.dump();
  auto other = VerifyProgram::create(c);
  ASSERT_TRUE(other.ok());
  ByteReader r(w.bytes());
  Status loaded = (*other)->migration_state()->load(r, 3);
  EXPECT_TRUE(loaded.ok()) << loaded.to_string();
  EXPECT_TRUE(r.at_end());
  // Versions 1 (power-of-two latency buckets) and 2 (no resets) are other layouts: refused,
  // not misread.
  for (int version : {1, 2}) {
    ByteReader old(w.bytes());
    EXPECT_FALSE((*other)->migration_state()->load(old, version).ok()) << version;
  }
}

TEST(VerifyState, AResetDuringBringUpRestartsItAndTravels) {
  VerifyConfig c;
  c.dma_base = 0x1000000;
  c.dma_size = verify_dma_bytes(c);
  auto program = VerifyProgram::create(c);
  ASSERT_TRUE(program.ok());
  (*program)->note_reset();
  EXPECT_EQ((*program)->state().resets, 1u);
  EXPECT_EQ((*program)->phase(), verify::Phase::kProbe);
  EXPECT_EQ((*program)->state().resume_phase, verify::Phase::kProbe) << "no I/O phase to resume";
  EXPECT_EQ((*program)->status()["resets"], 1);
  ByteWriter w;
  vmstate::Json vmdesc = vmstate::Json::object();
  ASSERT_TRUE((*program)->migration_state()->save(w, vmdesc).ok());
  auto other = VerifyProgram::create(c);
  ASSERT_TRUE(other.ok());
  ByteReader r(w.bytes());
  Status loaded = (*other)->migration_state()->load(r, 3);
  ASSERT_TRUE(loaded.ok()) << loaded.to_string();
  EXPECT_EQ((*other)->state().resets, 1u);
}

TEST(VerifyState, AResumePhaseOutsideBringUpIsRefused) {
  verify::VerifyState s;
  s.local.iodepth = 1;
  s.slot_count = 1;
  s.slots.resize(1);
  s.phase = verify::Phase::kProbe;
  s.resume_phase = verify::Phase::kRun;
  EXPECT_FALSE(verify::check_consistency(s).ok()) << "resume without a model";
  s.block_count = 4;
  s.generations.assign(4, 0);
  s.uncertain.assign(4, 0);
  EXPECT_TRUE(verify::check_consistency(s).ok());
  s.resume_phase = verify::Phase::kCreateCq;
  EXPECT_FALSE(verify::check_consistency(s).ok()) << "resume into bring-up";
  s.uncertain.resize(3);
  s.resume_phase = verify::Phase::kProbe;
  EXPECT_FALSE(verify::check_consistency(s).ok()) << "uncertain flags for every block";
}

}  // namespace
}  // namespace ferry::guest
