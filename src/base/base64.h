// Standard base64 (RFC 4648, with padding), as qtest's b64read/b64write carry memory:
// the VM's qtest server and the test-side qtest client both use it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace ferry {

std::string base64_encode(std::span<const uint8_t> data);
// Strict: length a multiple of 4, padding only at the very end; errors name the offset.
Result<std::vector<uint8_t>> base64_decode(std::string_view text);

}  // namespace ferry
