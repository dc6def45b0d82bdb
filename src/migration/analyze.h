// analyze: describes a whole migration stream (Ferry's or QEMU's) as JSON, walking every
// byte and reporting the offset and reason of the first thing that is malformed.
//
// Device sections carry no length, so their bodies are sized with the stream's own
// vmdesc (found as analyze-migration.py finds it: the first '{' after the last 0x00,
// preceded by 0x06 and a be32 length that reaches the end of the stream). RAM sections
// are walked record by record with the block list of their START body.
#pragma once

#include <cstdint>
#include <span>

#include "vmstate/vmdesc.h"

namespace ferry::migration {

// {"size", "machine_type", "records":[{"offset","type",...}], "ram":{"blocks","pages",
//  "zero_pages"}, "vmdesc":{...}, "errors":[{"offset","reason"}]}. "errors" is empty for
// a well-formed stream; walking stops at the first error (nothing can be resynchronised
// without lengths).
vmstate::Json analyze_stream(std::span<const uint8_t> bytes);

}  // namespace ferry::migration
