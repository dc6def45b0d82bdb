// analyze: describes a whole migration stream (Ferry's or QEMU's) as JSON, walking every
// byte in order and reporting the offset and reason of the first thing that is malformed.
//
// The stream is read through a StreamReader, so memory stays bounded whatever its size:
// RAM pages pass through the reader's buffer one by one, and a device section is held
// only while it is walked (at most the reader's 16 MiB window).
//
// Device sections carry no length, so their bodies are sized with the stream's own
// vmdesc, which comes last: it is found through random access to the stream's end, as
// analyze-migration.py finds it (the first '{' after the last 0x00, preceded by 0x06 and
// a be32 length that reaches the end of the stream), and only once a device section needs
// it. A vmdesc that is cut or is not JSON is the problem reported, with its offset. A
// stream with no vmdesc at all (cut before it) is walked section by section through the
// footers (0x7e and the section id), so the report says where the stream ends: "the stream
// ends at offset N inside section 'X' ...". RAM sections are walked record by record with
// the block list of their START body.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "migration/channel.h"
#include "vmstate/vmdesc.h"

namespace ferry::migration {

// Random access to the stream, for its vmdesc.
class StreamTail {
 public:
  virtual uint64_t size() const = 0;
  // Fills `out` with the bytes at `offset` (all of them, or an error).
  virtual Status read_at(uint64_t offset, std::span<uint8_t> out) = 0;

 protected:
  ~StreamTail() = default;
};

// What the walk passes by, for callers that decode further without holding the stream.
class AnalyzeObserver {
 public:
  // A device section's body at stream offset `offset`, sized by the vmdesc. Valid during
  // the call only.
  virtual void device_body(uint64_t offset, std::span<const uint8_t> body) = 0;
  // A RAM page record of `block` at guest offset `address`: `page` holds the 4 KiB of a
  // PAGE record, or is empty for a ZERO record, whose fill byte is `fill`.
  virtual void ram_page(std::string_view block, uint64_t address, std::span<const uint8_t> page,
                        uint8_t fill) = 0;

 protected:
  ~AnalyzeObserver() = default;
};

// {"size", "machine_type", "records":[{"offset","type",...}], "ram":{"blocks","pages",
//  "zero_pages"}, "vmdesc":{...}, "errors":[{"offset","reason"}]}. "errors" is empty for
// a well-formed stream; walking stops at the first error (nothing can be resynchronised
// without lengths). `stream` gives the bytes in order from offset 0; `tail` the same bytes
// by offset.
vmstate::Json analyze_stream(Channel& stream, StreamTail& tail,
                             AnalyzeObserver* observer = nullptr);

// The same over bytes in memory.
vmstate::Json analyze_stream(std::span<const uint8_t> bytes, AnalyzeObserver* observer = nullptr);

// The same over a file, read in order and never whole. Fails only when the file cannot be
// opened or is not a regular file; read errors are the analysis's errors.
Result<vmstate::Json> analyze_file(const std::string& path, AnalyzeObserver* observer = nullptr);

}  // namespace ferry::migration
