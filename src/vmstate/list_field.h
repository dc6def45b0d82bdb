// Lists of structs (std::list / std::deque), QEMU's QTAILQ/QLIST encoding:
// 0x01 element 0x01 element ... 0x00. Bounded by a declared maximum on load.
#pragma once

#include "vmstate/fields.h"

namespace ferry::vmstate {

template <typename T, typename C, typename Codec>
struct ListField {
  using Object = T;
  static_assert(ListContainer<C>::value, "a list field is a std::list or std::deque");
  static_assert(std::is_same_v<typename C::value_type, typename Codec::Value>,
                "the element description must describe the list's element type");
  std::string_view name;
  C T::*member;
  Codec codec;
  size_t max;
  int since_version = 0;

  constexpr ListField since(int version) const {
    ListField f = *this;
    f.since_version = version;
    return f;
  }
  template <typename D>
  Status save(T& obj, ByteSink& w, D& d, std::string_view shown) const {
    // One vmdesc entry for the whole list; element descriptions would repeat keys.
    d.field_begin(shown, "qtailq", ArrayPos::none(), false);
    d.mute();
    size_t i = 0;
    Status st;
    for (auto& elem : obj.*member) {
      w.put_u8(wire::kListMore);
      st = codec.save(elem, w, d);
      if (!st.ok()) {
        st.prepend_path(index_segment(i));
        break;
      }
      ++i;
    }
    if (st.ok()) w.put_u8(wire::kListEnd);
    d.unmute();
    d.field_end();
    return st;
  }
  bool load(T& obj, ByteReader& r, Status& err) const {
    C& list = obj.*member;
    if (!list.empty())
      return fail(err, Error(ErrorCode::kFailedPrecondition,
                             "destination list already holds {} elements; refusing to mix states",
                             list.size()));
    for (size_t i = 0;; ++i) {
      uint8_t marker;
      if (!r.get_u8(marker)) [[unlikely]]
        return fail(err, r.truncated(1).prepend_path(index_segment(i)));
      if (marker == wire::kListEnd) return true;
      if (marker != wire::kListMore) [[unlikely]]
        return fail(err, Error(ErrorCode::kCorrupt,
                               "expected list marker {:#04x} (element) or {:#04x} (end), "
                               "found {:#04x}",
                               wire::kListMore, wire::kListEnd, marker)
                             .prepend_path(index_segment(i)));
      if (i >= max) [[unlikely]]
        return fail(err, Error(ErrorCode::kOutOfRange,
                               "more than the declared maximum of {} elements", max));
      list.emplace_back();
      if (!codec.load(list.back(), r, err)) [[unlikely]] {
        err.prepend_path(index_segment(i));
        return false;
      }
    }
  }
  constexpr bool can_compress() const { return true; }
  template <typename Owner>
  Status check(const Owner&, size_t) const {
    if (max == 0) return Error(ErrorCode::kInvalidArgument, "list '{}' declares maximum 0", name);
    return codec.check();
  }
};

}  // namespace ferry::vmstate
