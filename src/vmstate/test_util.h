// Helpers shared by the vmstate unit tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/byte_reader.h"
#include "base/byte_writer.h"

namespace ferry::vmstate::test {

// "31 00000000 30" -> bytes; spaces are ignored.
inline std::vector<uint8_t> hex(std::string_view text) {
  std::vector<uint8_t> out;
  std::string digits;
  for (char c : text)
    if (c != ' ') digits.push_back(c);
  for (size_t i = 0; i + 1 < digits.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoul(digits.substr(i, 2), nullptr, 16)));
  return out;
}

inline std::string to_hex(std::span<const uint8_t> bytes) {
  std::string s;
  for (uint8_t b : bytes) s += fmt::format("{:02x}", b);
  return s;
}

template <typename Desc, typename Obj>
std::vector<uint8_t> saved(const Desc& desc, Obj& obj) {
  ByteWriter w;
  Status st = desc.save(obj, w);
  if (!st.ok()) throw std::runtime_error(st.to_string());
  return w.to_vector();
}

template <typename Desc, typename Obj>
Status load_from(const Desc& desc, Obj& obj, const std::vector<uint8_t>& bytes,
                 int version = -1, size_t* consumed = nullptr) {
  ByteReader r(bytes);
  Status st = version < 0 ? desc.load(obj, r) : desc.load(obj, r, version);
  if (consumed) *consumed = r.offset();
  return st;
}

}  // namespace ferry::vmstate::test
