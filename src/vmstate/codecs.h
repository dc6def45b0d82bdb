// Element codecs: how one element of a field is written and read. Field kinds (fields.h)
// combine a codec with a shape (single, fixed array, counted array, pointer array, list).
#pragma once

#include <cstdint>
#include <string_view>
#include <type_traits>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "base/status.h"

namespace ferry::vmstate {

// Loading reports failure as `false` and leaves the error in `err`: a bool travels in a
// register, so the success path of an unrolled load costs what a hand-written decoder
// does, and a Status is only built when something is wrong.
[[gnu::cold]] inline bool fail(Status& err, Status st) {
  err = std::move(st);
  return false;
}

// QEMU's vmdesc type name for a wire integer type.
template <typename W>
constexpr std::string_view wire_type_name() {
  if constexpr (std::is_same_v<W, bool>) return "bool";
  else if constexpr (std::is_same_v<W, uint8_t>) return "uint8";
  else if constexpr (std::is_same_v<W, uint16_t>) return "uint16";
  else if constexpr (std::is_same_v<W, uint32_t>) return "uint32";
  else if constexpr (std::is_same_v<W, uint64_t>) return "uint64";
  else if constexpr (std::is_same_v<W, int8_t>) return "int8";
  else if constexpr (std::is_same_v<W, int16_t>) return "int16";
  else if constexpr (std::is_same_v<W, int32_t>) return "int32";
  else if constexpr (std::is_same_v<W, int64_t>) return "int64";
  else static_assert(sizeof(W) == 0, "not a wire integer type");
}

// QEMU's type names for "equal" fields (its uint64 variant really is called "int64 equal").
template <typename W>
constexpr std::string_view wire_equal_type_name() {
  if constexpr (std::is_same_v<W, uint8_t>) return "uint8 equal";
  else if constexpr (std::is_same_v<W, uint16_t>) return "uint16 equal";
  else if constexpr (std::is_same_v<W, uint32_t>) return "uint32 equal";
  else if constexpr (std::is_same_v<W, uint64_t>) return "int64 equal";
  else if constexpr (std::is_same_v<W, int32_t>) return "int32 equal";
  else return wire_type_name<W>();
}

template <typename V>
concept WireInteger = std::is_integral_v<V> && !std::is_same_v<V, char> &&
                      (sizeof(V) == 1 || sizeof(V) == 2 || sizeof(V) == 4 || sizeof(V) == 8);

// A member type that travels as one wire integer: bool, a fixed-width integer, or an enum
// (sent as its underlying type unless a wire width is chosen explicitly).
template <typename V>
concept ScalarValue = WireInteger<V> || std::is_enum_v<V>;

template <ScalarValue V>
struct DefaultWire {
  using type = V;
};
template <ScalarValue V>
  requires std::is_enum_v<V>
struct DefaultWire<V> {
  using type = std::underlying_type_t<V>;
};

// Printable form of a scalar for error messages.
template <ScalarValue V>
auto printable(V v) {
  if constexpr (std::is_same_v<V, bool>) return static_cast<int>(v);
  else if constexpr (std::is_enum_v<V>) return static_cast<int64_t>(v);
  else if constexpr (sizeof(V) == 1) return static_cast<int>(v);
  else return v;
}

template <ScalarValue V, WireInteger W = typename DefaultWire<V>::type>
struct ScalarCodec {
  using Value = V;
  using Wire = W;
  static constexpr bool kIsStruct = false;
  static constexpr std::string_view type_name() { return wire_type_name<W>(); }
  constexpr bool can_compress() const { return true; }
  Status check() const { return {}; }

  template <typename D>
  Status save(const V& v, ByteSink& w, D&) const {
    w.put(static_cast<std::conditional_t<std::is_same_v<W, bool>, uint8_t, W>>(v));
    return {};
  }

  [[gnu::always_inline]] bool load(V& v, ByteReader& r, Status& err) const {
    W wire;
    if constexpr (std::is_same_v<W, bool>) {
      uint8_t byte;
      if (!r.get(byte)) [[unlikely]] return fail(err, r.truncated(1));
      if (byte > 1) [[unlikely]]
        return fail(err, Error(ErrorCode::kCorrupt, "expected a bool (0 or 1), found {:#04x}", byte));
      wire = byte != 0;
    } else {
      if (!r.get(wire)) [[unlikely]] return fail(err, r.truncated(sizeof(W)));
    }
    v = static_cast<V>(wire);
    return true;
  }
};

// A nested struct described by its own description (QEMU's VMS_STRUCT).
template <typename Desc>
struct StructCodec {
  using Value = typename Desc::Object;
  static constexpr bool kIsStruct = true;
  static constexpr std::string_view type_name() { return "struct"; }
  const Desc* desc;

  bool can_compress() const { return desc->can_compress_as_element(); }
  Status check() const { return desc->check(); }

  template <typename D>
  Status save(Value& v, ByteSink& w, D& d) const {
    return desc->save_body(v, w, d);
  }
  bool load(Value& v, ByteReader& r, Status& err) const {
    return desc->load_body(v, r, desc->version(), err);
  }
};

}  // namespace ferry::vmstate
