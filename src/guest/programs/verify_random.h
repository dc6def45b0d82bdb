// The verify workload's pseudo-random numbers: splitmix64 (Steele, Lea, Flood 2014), whose
// whole state is one uint64_t — so the generator migrates as a single field and the
// destination continues the exact sequence the source would have produced.
#pragma once

#include <cstdint>

namespace ferry::guest::verify {

// The finalizer: a bijective mix of 64 bits.
inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Advances `state` and returns the next value.
inline uint64_t splitmix64_next(uint64_t& state) {
  state += 0x9e3779b97f4a7c15ull;
  return splitmix64_mix(state);
}

// A value in [0, bound) (bound > 0); the modulo bias is negligible for bounds far below 2^64.
inline uint64_t random_below(uint64_t& state, uint64_t bound) {
  return splitmix64_next(state) % bound;
}

}  // namespace ferry::guest::verify
