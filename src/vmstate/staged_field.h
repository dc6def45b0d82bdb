// A byte buffer that loads into a staging member instead of the live one (QEMU's
// get_pci_config_device, too, reads the incoming config space into a temporary and checks
// it before copying). The description's post_load checks the staged bytes against the live
// ones and copies them over: a stream refused by any later field or by post_load, or cut
// short, leaves the live bytes as they were. Saving writes the live member, as one vmdesc
// "buffer" entry exactly as BufferField does, so the wire cannot tell the two apart.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <type_traits>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "base/status.h"
#include "vmstate/codecs.h"
#include "vmstate/containers.h"
#include "vmstate/visitors.h"

namespace ferry::vmstate {

// Where staged bytes wait: a container of the live member's type, or a std::unique_ptr to
// one, allocated by the first load (a 4 KiB config space need not sit in every object).
template <typename C, typename S>
inline constexpr bool kStagingFor =
    std::is_same_v<S, C> || std::is_same_v<S, std::unique_ptr<C>>;

template <typename C, typename S>
C& staging_container(S& slot) {
  if constexpr (std::is_same_v<S, C>) {
    return slot;
  } else {
    if (!slot) slot = std::make_unique<C>();
    return *slot;
  }
}

// Extent: WholeContainer or LocalCount, whose counts come from the live member and never
// resize it (the builders allow no other).
template <typename T, typename C, typename S, typename Extent>
struct StagedBufferField {
  using Object = T;
  using Traits = Container<C>;
  static_assert(std::is_same_v<typename Traits::Elem, uint8_t>, "a buffer holds uint8_t");
  static_assert(kStagingFor<C, S>,
                "the staging member is the live member's type or a std::unique_ptr to it");
  std::string_view name;
  C T::*member;
  S T::*staging;
  Extent extent;
  int since_version = 0;

  constexpr StagedBufferField since(int version) const {
    StagedBufferField f = *this;
    f.since_version = version;
    return f;
  }
  template <typename D>
  Status save(T& obj, ByteSink& w, D& d, std::string_view shown) const {
    C& live = obj.*member;
    size_t n = 0;
    FERRY_RETURN_IF_ERROR(extent.save_count(obj, live, n));
    d.field_begin(shown, "buffer", ArrayPos::none(), false);
    w.put_bytes(std::span<const uint8_t>(Traits::data(live), n));
    d.field_end();
    return {};
  }
  bool load(T& obj, ByteReader& r, Status& err) const {
    size_t n = 0;
    if (!extent.load_count(obj, obj.*member, n, err)) return false;
    C& stage = staging_container<C>(obj.*staging);
    if constexpr (!Traits::kFixed) {
      if (Traits::size(stage) < n) Traits::resize(stage, n);
    }
    if (!r.get_bytes(std::span<uint8_t>(Traits::data(stage), n))) [[unlikely]]
      return fail(err, r.truncated(n));
    return true;
  }
  constexpr bool can_compress() const { return true; }
  template <typename Owner>
  Status check(const Owner& owner, size_t index) const {
    if constexpr (std::is_same_v<S, C>) {
      if (staging == member)
        return Error(ErrorCode::kInvalidArgument,
                     "staged buffer '{}' stages into its own live member", name);
    }
    // Without a post_load nothing would ever reach the live member.
    if (!owner.has_post_load())
      return Error(ErrorCode::kInvalidArgument,
                   "staged buffer '{}' needs a post_load hook of '{}' to commit it", name,
                   owner.name());
    return extent.template check<Owner, C>(owner, index, name, since_version);
  }
};

}  // namespace ferry::vmstate
