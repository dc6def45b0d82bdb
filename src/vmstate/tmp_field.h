// "With tmp" views (QEMU's VMSTATE_WITH_TMP): the stream carries a temporary type that is
// filled from the parent before saving and applied to the parent after loading, so the
// wire format can stay fixed while the device's in-memory layout changes.
// Also: reserved bytes (QEMU's VMSTATE_UNUSED), written as zeros and skipped on load.
#pragma once

#include "vmstate/fields.h"

namespace ferry::vmstate {

template <typename T, typename TmpDesc, typename Fill, typename Apply>
struct TmpField {
  using Object = T;
  using Tmp = typename TmpDesc::Object;
  static_assert(std::is_invocable_r_v<Status, const Fill&, const T&, Tmp&>,
                "fill is Status(const Parent&, Tmp&)");
  static_assert(std::is_invocable_r_v<Status, const Apply&, T&, const Tmp&>,
                "apply is Status(Parent&, const Tmp&)");
  std::string_view name;
  const TmpDesc* desc;
  Fill fill;
  Apply apply;
  int since_version = 0;

  constexpr TmpField since(int version) const {
    TmpField f = *this;
    f.since_version = version;
    return f;
  }
  template <typename D>
  Status save(T& obj, ByteSink& w, D& d, std::string_view shown) const {
    Tmp tmp{};
    FERRY_RETURN_IF_ERROR(fill(obj, tmp));
    d.field_begin(shown, "tmp", ArrayPos::none(), false);
    Status st = desc->save_body(tmp, w, d);
    d.field_end();
    return st;
  }
  bool load(T& obj, ByteReader& r, Status& err) const {
    Tmp tmp{};
    if (!desc->load_body(tmp, r, desc->version(), err)) return false;
    Status applied = apply(obj, tmp);
    if (!applied.ok()) [[unlikely]] return fail(err, std::move(applied));
    return true;
  }
  constexpr bool can_compress() const { return true; }
  template <typename Owner>
  Status check(const Owner&, size_t) const {
    return desc->check();
  }
};

// Object-agnostic: usable in the description of any type.
struct UnusedField {
  using Object = void;
  std::string_view name;
  size_t size;
  int since_version = 0;

  constexpr UnusedField since(int version) const {
    UnusedField f = *this;
    f.since_version = version;
    return f;
  }
  template <typename T, typename D>
  Status save(T&, ByteSink& w, D& d, std::string_view shown) const {
    d.field_begin(shown, "unused_buffer", ArrayPos::none(), false);
    w.put_zeros(size);
    d.field_end();
    return {};
  }
  template <typename T>
  bool load(T&, ByteReader& r, Status& err) const {
    return r.skip(size) || fail(err, r.truncated(size));
  }
  constexpr bool can_compress() const { return true; }
  template <typename Owner>
  Status check(const Owner&, size_t) const {
    if (size == 0) return Error(ErrorCode::kInvalidArgument, "unused field '{}' has size 0", name);
    return {};
  }
};

}  // namespace ferry::vmstate
