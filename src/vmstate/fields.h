// Field kinds. Each kind is a small literal type holding a member pointer and whatever
// the kind needs (codec, count, bounds); descriptions hold them in a std::tuple, so saving
// and loading compile to straight-line code. Every kind provides:
//   name, since_version                   – QEMU's field name and version_id
//   save(obj, sink, observer, shown)      – write the field; `shown` is its vmdesc name
//   load(obj, reader, err)                – read it back, treating the input as hostile;
//                                           false with the error in `err` on failure
//   can_compress()                        – may vmdesc fold its elements into array_len
//   check(owner, index)                   – registration-time rules (see check.h)
//   stores(member) (scalars only)         – whether this field carries `member` (counts)
// Errors carry the path below the field; the description prepends the field name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "base/status.h"
#include "vmstate/codecs.h"
#include "vmstate/containers.h"
#include "vmstate/visitors.h"
#include "vmstate/wire.h"

namespace ferry::vmstate {

inline std::string index_segment(size_t i) { return fmt::format("[{}]", i); }

// ---- shared helpers ---------------------------------------------------------------------

// Writes `n` elements, emitting vmdesc entries the way QEMU does: one entry with
// "array_len" for a compressible array (later elements muted), else one entry per element
// with "index" (no key at all for a lone element).
template <typename D, typename Codec, typename ElemAt>
Status save_elements(ByteSink& w, D& d, std::string_view shown, const Codec& codec, size_t n,
                     ElemAt&& at) {
  [[maybe_unused]] const bool compress = D::kActive && n > 1 && codec.can_compress();
  for (size_t i = 0; i < n; ++i) {
    if constexpr (D::kActive) {
      if (compress && i == 1) d.mute();
      ArrayPos pos = n <= 1 ? ArrayPos::none()
                     : compress ? ArrayPos::len(n)
                                : ArrayPos::index(i);
      d.field_begin(shown, Codec::type_name(), pos, Codec::kIsStruct);
    }
    Status st = codec.save(at(i), w, d);
    if constexpr (D::kActive) d.field_end();
    if (!st.ok()) [[unlikely]] {
      if (compress && i >= 1) d.unmute();
      return st.prepend_path(index_segment(i));
    }
  }
  if (compress) d.unmute();
  return {};
}

// Loads elements 0..n-1 with `load_element(i)`; a failure gains "[i]" in its path.
template <typename LoadElement>
bool load_elements(size_t n, Status& err, LoadElement&& load_element) {
  for (size_t i = 0; i < n; ++i) {
    if (!load_element(i)) [[unlikely]] {
      err.prepend_path(index_segment(i));
      return false;
    }
  }
  return true;
}

template <typename Pred, typename T, typename V>
bool call_validator(const Pred& pred, const T& obj, const V& value) {
  if constexpr (std::is_invocable_r_v<bool, const Pred&, const V&>) return pred(value);
  else return pred(obj, value);
}

struct NoValidator {};

// ---- how many elements an array field has -----------------------------------------------

// Saving with the count an earlier field holds: it must fit the elements present.
template <typename N>
Status save_count_field(N v, size_t present, size_t& n) {
  if (std::cmp_less(v, 0) || std::cmp_greater(v, present))
    return Error(ErrorCode::kInternal, "count {} does not fit the {} elements present",
                 printable(v), present);
  n = static_cast<size_t>(v);
  return {};
}


// Every element of a fixed-capacity container.
struct WholeContainer {
  template <typename T, typename C>
  Status save_count(const T&, const C&, size_t& n) const {
    n = Container<C>::kCapacity;
    return {};
  }
  template <typename T, typename C>
  bool load_count(const T&, C&, size_t& n, Status&) const {
    n = Container<C>::kCapacity;
    return true;
  }
  template <typename Owner, typename C>
  Status check(const Owner&, size_t, std::string_view, int) const {
    return {};
  }
};

// As many elements as an earlier field says (QEMU's VARRAY), never more than `max`.
template <typename T, typename N>
struct CountedBy {
  static_assert(std::is_integral_v<N> && !std::is_same_v<N, bool>, "a count is an integer");
  N T::*count;
  size_t max;

  template <typename C>
  Status save_count(const T& obj, const C& c, size_t& n) const {
    return save_count_field(obj.*count, Container<C>::size(c), n);
  }
  template <typename C>
  bool load_count(const T& obj, C& c, size_t& n, Status& err) const {
    N v = obj.*count;
    if (std::cmp_less(v, 0) || std::cmp_greater(v, max)) [[unlikely]]
      return fail(err, Error(ErrorCode::kOutOfRange,
                             "count {} is outside the declared maximum {}", printable(v), max));
    n = static_cast<size_t>(v);
    if constexpr (!Container<C>::kFixed) Container<C>::resize(c, n);
    return true;
  }
  template <typename Owner, typename C>
  Status check(const Owner& owner, size_t index, std::string_view name, int since) const {
    if (max == 0) return Error(ErrorCode::kInvalidArgument, "array '{}' declares maximum 0", name);
    if constexpr (Container<C>::kFixed) {
      if (max > Container<C>::kCapacity)
        return Error(ErrorCode::kInvalidArgument,
                     "array '{}' declares maximum {} but holds only {} elements", name, max,
                     Container<C>::kCapacity);
    }
    auto counter = owner.find_member(count);
    if (!counter || counter->index >= index)
      return Error(ErrorCode::kInvalidArgument,
                   "the count of array '{}' is not an earlier field of '{}'", name,
                   owner.name());
    if (counter->since > since)
      return Error(ErrorCode::kInvalidArgument,
                   "the count of array '{}' (field '{}', since version {}) is newer than the "
                   "array (since version {})",
                   name, counter->name, counter->since, since);
    return {};
  }
};

// ---- scalars ------------------------------------------------------------------------------

template <typename T, ScalarValue V, WireInteger W, typename Validator = NoValidator>
struct ScalarField {
  using Object = T;
  std::string_view name;
  V T::*member;
  int since_version = 0;
  bool must_equal = false;
  Validator validator{};
  std::string_view validator_message{};

  constexpr ScalarField since(int version) const {
    ScalarField f = *this;
    f.since_version = version;
    return f;
  }
  // Load fails unless the incoming value equals the local one (QEMU's *_EQUAL).
  constexpr ScalarField equal() const {
    ScalarField f = *this;
    f.must_equal = true;
    return f;
  }
  // Load fails with `message` unless pred(value) (or pred(object, value)) holds; earlier
  // fields of the object are already loaded when it runs.
  template <typename Pred>
  constexpr ScalarField<T, V, W, Pred> validate(Pred pred, std::string_view message) const {
    return {name, member, since_version, must_equal, pred, message};
  }

  template <typename D>
  Status save(T& obj, ByteSink& w, D& d, std::string_view shown) const {
    d.field_begin(shown, must_equal ? wire_equal_type_name<W>() : wire_type_name<W>(),
                  ArrayPos::none(), false);
    Status st = ScalarCodec<V, W>{}.save(obj.*member, w, d);
    d.field_end();
    return st;
  }

  void save_fast(T& obj, ByteSink& w) const {
    w.put(static_cast<std::conditional_t<std::is_same_v<W, bool>, uint8_t, W>>(obj.*member));
  }
  [[gnu::always_inline]] bool load(T& obj, ByteReader& r, Status& err) const {
    if constexpr (std::is_same_v<Validator, NoValidator>) {
      if (!must_equal) [[likely]] return ScalarCodec<V, W>{}.load(obj.*member, r, err);
    }
    return load_checked(obj, r, err);
  }
  // Kept out of line so the plain load above stays small enough to inline everywhere.
  [[gnu::noinline]] bool load_checked(T& obj, ByteReader& r, Status& err) const {
    V value{};
    if (!ScalarCodec<V, W>{}.load(value, r, err)) return false;
    if (must_equal && value != obj.*member)
      return fail(err, Error(ErrorCode::kCorrupt,
                             "expected {} (must equal the local value), found {}",
                             printable(obj.*member), printable(value)));
    if constexpr (!std::is_same_v<Validator, NoValidator>) {
      if (!call_validator(validator, obj, value))
        return fail(err, Error(ErrorCode::kCorrupt, "{}: found {}", validator_message,
                               printable(value)));
    }
    obj.*member = value;
    return true;
  }

  constexpr bool can_compress() const { return true; }
  template <typename Owner>
  Status check(const Owner&, size_t) const {
    if constexpr (!std::is_same_v<Validator, NoValidator>) {
      if (validator_message.empty())
        return Error(ErrorCode::kInvalidArgument, "validator of field '{}' has no message", name);
    }
    return {};
  }
  template <typename M>
  bool stores(M T::*m) const {
    if constexpr (std::is_same_v<M, V>) return m == member;
    else return false;
  }
};

// ---- one nested struct, fixed arrays, counted arrays ----------------------------------------

template <typename T, typename M, typename Codec>
struct SingleField {
  using Object = T;
  std::string_view name;
  M T::*member;
  Codec codec;
  int since_version = 0;

  constexpr SingleField since(int version) const {
    SingleField f = *this;
    f.since_version = version;
    return f;
  }
  template <typename D>
  Status save(T& obj, ByteSink& w, D& d, std::string_view shown) const {
    d.field_begin(shown, Codec::type_name(), ArrayPos::none(), Codec::kIsStruct);
    Status st = codec.save(obj.*member, w, d);
    d.field_end();
    return st;
  }
  bool load(T& obj, ByteReader& r, Status& err) const { return codec.load(obj.*member, r, err); }
  bool can_compress() const { return codec.can_compress(); }
  template <typename Owner>
  Status check(const Owner&, size_t) const {
    return codec.check();
  }
};

template <typename T, typename C, typename Codec, typename Extent>
struct ArrayField {
  using Object = T;
  using Traits = Container<C>;
  std::string_view name;
  C T::*member;
  Codec codec;
  Extent extent;
  int since_version = 0;

  constexpr ArrayField since(int version) const {
    ArrayField f = *this;
    f.since_version = version;
    return f;
  }
  template <typename D>
  Status save(T& obj, ByteSink& w, D& d, std::string_view shown) const {
    C& c = obj.*member;
    size_t n = 0;
    FERRY_RETURN_IF_ERROR(extent.save_count(obj, c, n));
    return save_elements(w, d, shown, codec, n,
                         [&](size_t i) -> decltype(auto) { return Traits::at(c, i); });
  }
  bool load(T& obj, ByteReader& r, Status& err) const {
    C& c = obj.*member;
    size_t n = 0;
    if (!extent.load_count(obj, c, n, err)) return false;
    return load_elements(n, err, [&](size_t i) { return codec.load(Traits::at(c, i), r, err); });
  }
  bool can_compress() const { return codec.can_compress(); }
  template <typename Owner>
  Status check(const Owner& owner, size_t index) const {
    FERRY_RETURN_IF_ERROR((extent.template check<Owner, C>(owner, index, name, since_version)));
    return codec.check();
  }
};

// ---- byte buffers ---------------------------------------------------------------------------

// Raw bytes as one "buffer" entry: a fixed uint8_t array, or a counted one / vector.
template <typename T, typename C, typename Extent>
struct BufferField {
  using Object = T;
  using Traits = Container<C>;
  static_assert(std::is_same_v<typename Traits::Elem, uint8_t>, "a buffer holds uint8_t");
  std::string_view name;
  C T::*member;
  Extent extent;
  int since_version = 0;

  constexpr BufferField since(int version) const {
    BufferField f = *this;
    f.since_version = version;
    return f;
  }
  template <typename D>
  Status save(T& obj, ByteSink& w, D& d, std::string_view shown) const {
    C& c = obj.*member;
    size_t n = 0;
    FERRY_RETURN_IF_ERROR(extent.save_count(obj, c, n));
    d.field_begin(shown, "buffer", ArrayPos::none(), false);
    w.put_bytes(std::span<const uint8_t>(Traits::data(c), n));
    d.field_end();
    return {};
  }
  bool load(T& obj, ByteReader& r, Status& err) const {
    C& c = obj.*member;
    size_t n = 0;
    if (!extent.load_count(obj, c, n, err)) return false;
    if (!r.get_bytes(std::span<uint8_t>(Traits::data(c), n))) [[unlikely]]
      return fail(err, r.truncated(n));
    return true;
  }
  constexpr bool can_compress() const { return true; }
  template <typename Owner>
  Status check(const Owner& owner, size_t index) const {
    return extent.template check<Owner, C>(owner, index, name, since_version);
  }
};

// ---- arrays of pointers -----------------------------------------------------------------------

enum class PointerForm {
  // QEMU's VMS_ARRAY_OF_POINTER_AUTO_ALLOC: every element is preceded by 0x30 (NULL) or
  // 0x31 (present, then the element); the loader allocates present elements and refuses
  // to overwrite a slot that is not empty.
  kAutoAlloc,
  // QEMU's plain VMS_ARRAY_OF_POINTER: a NULL element is the single byte 0x30, a present
  // one is the bare element; the loader fills objects the destination already has.
  kPlain,
};

template <typename T, typename C, typename Codec, typename Extent, PointerForm kForm>
struct PointerArrayField {
  using Object = T;
  using Traits = Container<C>;
  using Slot = PointerSlot<typename Traits::Elem>;
  static_assert(Slot::value, "elements of a pointer array are E* or std::unique_ptr<E>");
  static_assert(std::is_same_v<typename Slot::Elem, typename Codec::Value>,
                "the element description must describe the pointed-to type");
  static_assert(kForm != PointerForm::kAutoAlloc || Slot::kOwning,
                "allocation on load needs owning slots (std::unique_ptr)");
  std::string_view name;
  C T::*member;
  Codec codec;
  Extent extent;
  int since_version = 0;

  constexpr PointerArrayField since(int version) const {
    PointerArrayField f = *this;
    f.since_version = version;
    return f;
  }

  template <typename D>
  Status save(T& obj, ByteSink& w, D& d, std::string_view shown) const {
    C& c = obj.*member;
    size_t n = 0;
    FERRY_RETURN_IF_ERROR(extent.save_count(obj, c, n));
    if constexpr (kForm == PointerForm::kAutoAlloc) return save_auto(c, n, w, d, shown);
    else return save_plain(c, n, w, d, shown);
  }

  bool load(T& obj, ByteReader& r, Status& err) const {
    C& c = obj.*member;
    size_t n = 0;
    if (!extent.load_count(obj, c, n, err)) return false;
    return load_elements(n, err, [&](size_t i) { return load_one(Traits::at(c, i), r, err); });
  }

  bool can_compress() const { return kForm == PointerForm::kPlain && codec.can_compress(); }
  template <typename Owner>
  Status check(const Owner& owner, size_t index) const {
    FERRY_RETURN_IF_ERROR((extent.template check<Owner, C>(owner, index, name, since_version)));
    return codec.check();
  }

 private:
  static ArrayPos pos_of(size_t n, size_t i) {
    return n > 1 ? ArrayPos::index(i) : ArrayPos::none();
  }

  template <typename D>
  Status save_auto(C& c, size_t n, ByteSink& w, D& d, std::string_view shown) const {
    for (size_t i = 0; i < n; ++i) {
      auto* p = Slot::get(Traits::at(c, i));
      d.field_begin(shown, "ptr-marker", pos_of(n, i), false);
      w.put_u8(p ? wire::kPtrValid : wire::kPtrNull);
      d.field_end();
      if (!p) continue;
      d.field_begin(shown, Codec::type_name(), pos_of(n, i), Codec::kIsStruct);
      Status st = codec.save(*p, w, d);
      d.field_end();
      if (!st.ok()) [[unlikely]] return st.prepend_path(index_segment(i));
    }
    return {};
  }

  // vmdesc folds each run of NULL or of present elements into one array_len entry when
  // the element kind allows it, as QEMU does since it started marking NULL entries.
  template <typename D>
  Status save_plain(C& c, size_t n, ByteSink& w, D& d, std::string_view shown) const {
    [[maybe_unused]] const bool compress = D::kActive && codec.can_compress();
    [[maybe_unused]] size_t run_end = 0;  // one past the current run
    [[maybe_unused]] bool muted = false;
    for (size_t i = 0; i < n; ++i) {
      auto* p = Slot::get(Traits::at(c, i));
      if constexpr (D::kActive) {
        ArrayPos pos = pos_of(n, i);
        if (compress) {
          if (i == run_end) {  // a run starts here
            if (muted) d.unmute();
            muted = false;
            run_end = i + 1;
            while (run_end < n &&
                   (Slot::get(Traits::at(c, run_end)) == nullptr) == (p == nullptr))
              ++run_end;
            if (run_end - i > 1) pos = ArrayPos::len(run_end - i);
          } else if (!muted) {
            d.mute();
            muted = true;
          }
        }
        d.field_begin(shown, p ? Codec::type_name() : std::string_view("ptr-marker"), pos,
                      p && Codec::kIsStruct);
      }
      Status st;
      if (p) st = codec.save(*p, w, d);
      else w.put_u8(wire::kPtrNull);
      if constexpr (D::kActive) d.field_end();
      if (!st.ok()) [[unlikely]] {
        if (muted) d.unmute();
        return st.prepend_path(index_segment(i));
      }
    }
    if (muted) d.unmute();
    return {};
  }

  bool load_one(typename Traits::Elem& slot, ByteReader& r, Status& err) const {
    auto* p = Slot::get(slot);
    if constexpr (kForm == PointerForm::kAutoAlloc) {
      uint8_t marker;
      if (!r.get_u8(marker)) [[unlikely]] return fail(err, r.truncated(1));
      if (marker != wire::kPtrNull && marker != wire::kPtrValid) [[unlikely]]
        return fail(err, Error(ErrorCode::kCorrupt,
                               "expected pointer marker {:#04x} (NULL) or {:#04x} (present), "
                               "found {:#04x}",
                               wire::kPtrNull, wire::kPtrValid, marker));
      if (p) [[unlikely]]
        return fail(err, Error(ErrorCode::kFailedPrecondition,
                               "destination slot already holds an object; refusing to "
                               "overwrite it"));
      if (marker == wire::kPtrNull) return true;
      slot = std::make_unique<typename Slot::Elem>();
      return codec.load(*slot, r, err);
    } else {
      if (p) return codec.load(*p, r, err);
      uint8_t marker;
      if (!r.get_u8(marker)) [[unlikely]] return fail(err, r.truncated(1));
      if (marker != wire::kPtrNull) [[unlikely]]
        return fail(err, Error(ErrorCode::kCorrupt,
                               "expected NULL marker {:#04x} for an element that is NULL here, "
                               "found {:#04x}",
                               wire::kPtrNull, marker));
      return true;
    }
  }
};

}  // namespace ferry::vmstate
