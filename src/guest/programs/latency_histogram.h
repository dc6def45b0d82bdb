// The verify program's latency histogram: log-linear buckets (HDR-histogram style), so a
// percentile read from it is within a few percent of the exact one at any magnitude.
//
// Values below 32 ns have a bucket each. From there every power-of-two range [2^k, 2^(k+1))
// is split into 32 equal sub-buckets, so a bucket is at most 1/32 (3.1%) of the values it
// holds wide. Values from 2^40 ns (about 18 minutes; commands time out long before) share
// the last bucket. 1,152 counters: bounded, and plain data for the migrated guest state.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>

namespace ferry::guest::verify {

inline constexpr unsigned kLatencySubBits = 5;
inline constexpr unsigned kLatencySubBuckets = 1u << kLatencySubBits;  // per power of two
inline constexpr unsigned kLatencyRangeBits = 40;                      // values < 2^40 ns
inline constexpr unsigned kLatencyBuckets =
    kLatencySubBuckets + (kLatencyRangeBits - kLatencySubBits) * kLatencySubBuckets;

using LatencyHistogram = std::array<uint64_t, kLatencyBuckets>;

// The bucket `ns` falls into.
constexpr unsigned latency_bucket(uint64_t ns) {
  ns = std::min<uint64_t>(ns, (uint64_t{1} << kLatencyRangeBits) - 1);
  if (ns < kLatencySubBuckets) return static_cast<unsigned>(ns);
  unsigned k = static_cast<unsigned>(std::bit_width(ns)) - 1;  // >= kLatencySubBits
  unsigned shift = k - kLatencySubBits;
  auto sub = static_cast<unsigned>(ns >> shift) - kLatencySubBuckets;  // 0..31
  return kLatencySubBuckets + shift * kLatencySubBuckets + sub;
}

// The smallest value in bucket `i`, and how many values it spans.
constexpr uint64_t latency_bucket_low(unsigned i) {
  if (i < kLatencySubBuckets) return i;
  unsigned shift = (i - kLatencySubBuckets) / kLatencySubBuckets;
  unsigned sub = (i - kLatencySubBuckets) % kLatencySubBuckets;
  return uint64_t{kLatencySubBuckets + sub} << shift;
}
constexpr uint64_t latency_bucket_width(unsigned i) {
  if (i < kLatencySubBuckets) return 1;
  return uint64_t{1} << ((i - kLatencySubBuckets) / kLatencySubBuckets);
}

// The latency below which a fraction `p` (0..1) of the samples fall: the bucket holding
// that rank, interpolated inside it (samples taken as spread evenly over the bucket); 0
// without samples.
inline uint64_t latency_percentile(const LatencyHistogram& buckets, double p) {
  uint64_t total = 0;
  for (uint64_t n : buckets) total += n;
  if (total == 0) return 0;
  double rank = std::clamp(std::ceil(p * static_cast<double>(total)), 1.0,
                           static_cast<double>(total));
  uint64_t below = 0;
  for (unsigned i = 0; i < kLatencyBuckets; ++i) {
    if (buckets[i] == 0) continue;
    if (static_cast<double>(below + buckets[i]) >= rank) {
      // The rank-th sample of the bucket sits at the middle of its share of the width.
      double within = (rank - static_cast<double>(below) - 0.5) / static_cast<double>(buckets[i]);
      return latency_bucket_low(i) +
             static_cast<uint64_t>(static_cast<double>(latency_bucket_width(i)) * within);
    }
    below += buckets[i];
  }
  return latency_bucket_low(kLatencyBuckets - 1);  // not reached: the ranks add up to total
}

}  // namespace ferry::guest::verify
