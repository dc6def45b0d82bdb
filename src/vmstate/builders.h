// The functions a device uses to describe its fields, one line per field:
//   field("head", &Q::head)                  scalar (bool, integer, enum as underlying type)
//   field_as<uint32_t>("state", &Q::state)   scalar with an explicit wire width
//   field("regs", &Q::regs)                  fixed array of scalars (C array, std::array)
//   field("cq", &Q::cq, kCqDesc)             nested struct, or fixed array of structs
//   varray("iv", &Q::iv, &Q::n_iv, 64)       array counted by an earlier field (C array,
//   varray("q", &Q::q, &Q::n, 64, kDesc)       std::array or std::vector), scalars or structs
//   buffer("id", &Q::id)                     fixed uint8_t array as one "buffer"
//   vbuffer("log", &Q::log, &Q::log_len, 4096)  counted bytes as one "buffer"
//   pointers("sq", &Q::sq, kSqDesc)          unique_ptr array, NULL holes, allocated on load
//   pointers("sq", &Q::sq, &Q::n, 64, kSqDesc)  the same, counted by an earlier field
//   pointers_plain("sq", &Q::sq, kSqDesc)    QEMU's plain pointer array (0x30 for NULL only)
//   config_array("v", &Q::v, own_size, kDesc)  as many elements as the local configuration
//   config_buffer("t", &Q::t, &Q::n_bytes)       says (no count in the stream); the count
//   config_pointers("q", &Q::q, own_size, kDesc)  source is own_size, a local integer
//                                               member or size_t(const Q&) (config_count.h)
//   config_varray("s", &Q::s, &Q::n, &Q::depth, kDesc)  counted by an earlier field that
//                                               must equal the local count
//   staged_buffer("c", &Q::c, &Q::in)        a "buffer" loaded into &Q::in (the same type
//   staged_buffer("c", &Q::c, &Q::in, &Q::n)   or a unique_ptr to it) for post_load to check
//                                               and commit; sized whole or by a count source
//   list("aer", &Q::aer, kAerDesc, 64)       std::list / std::deque of structs
//   with_tmp<Q>("tmp", kTmpDesc, fill, apply)  temporary view of the parent
//   unused(4)                                reserved bytes
// Any field: .since(version). Scalars: .equal(), .validate(pred, message).
#pragma once

#include <cstddef>
#include <string_view>
#include <type_traits>

#include "vmstate/codecs.h"
#include "vmstate/config_count.h"
#include "vmstate/containers.h"
#include "vmstate/fields.h"
#include "vmstate/list_field.h"
#include "vmstate/staged_field.h"
#include "vmstate/tmp_field.h"

namespace ferry::vmstate {

namespace detail {
template <typename>
inline constexpr bool kAlwaysFalse = false;

template <typename Desc, typename E>
constexpr void require_describes() {
  static_assert(std::is_same_v<typename Desc::Object, E>,
                "the description given does not describe this member's element type");
}

template <typename S, typename T>
constexpr void require_count_source() {
  static_assert(CountSource<S, T>,
                "a config-sized array needs a count source before its element description: "
                "vmstate::own_size, a local integer member of the object, or "
                "size_t (*)(const T&)");
}
}  // namespace detail

template <typename T, typename M>
constexpr auto field(std::string_view name, M T::*member) {
  if constexpr (ScalarValue<M>) {
    return ScalarField<T, M, typename DefaultWire<M>::type>{name, member};
  } else if constexpr (FixedArray<M>) {
    using E = typename Container<M>::Elem;
    static_assert(ScalarValue<E>, "for an array of structs, pass the element description");
    return ArrayField<T, M, ScalarCodec<E>, WholeContainer>{name, member, {}, {}};
  } else {
    static_assert(detail::kAlwaysFalse<M>,
                  "field(name, member) takes a scalar or a fixed array of scalars; nested "
                  "structs need their description, vectors a count (varray)");
  }
}

template <WireInteger W, typename T, typename M>
constexpr auto field_as(std::string_view name, M T::*member) {
  static_assert(ScalarValue<M>, "field_as takes a scalar member");
  return ScalarField<T, M, W>{name, member};
}

template <typename T, typename M, typename Desc>
constexpr auto field(std::string_view name, M T::*member, const Desc& desc) {
  if constexpr (std::is_same_v<M, typename Desc::Object>) {
    return SingleField<T, M, StructCodec<Desc>>{name, member, {&desc}};
  } else {
    static_assert(FixedArray<M>, "member is neither the described struct nor a fixed array of it");
    detail::require_describes<Desc, typename Container<M>::Elem>();
    return ArrayField<T, M, StructCodec<Desc>, WholeContainer>{name, member, {&desc}, {}};
  }
}

template <typename T, typename C, typename N>
constexpr auto varray(std::string_view name, C T::*member, N T::*count, size_t max) {
  static_assert(ArrayLike<C>, "varray takes a C array, std::array or std::vector");
  using E = typename Container<C>::Elem;
  static_assert(ScalarValue<E>, "for structs, pass the element description");
  return ArrayField<T, C, ScalarCodec<E>, CountedBy<T, N>>{name, member, {}, {count, max}};
}

template <typename T, typename C, typename N, typename Desc>
constexpr auto varray(std::string_view name, C T::*member, N T::*count, size_t max,
                      const Desc& desc) {
  static_assert(ArrayLike<C>, "varray takes a C array, std::array or std::vector");
  detail::require_describes<Desc, typename Container<C>::Elem>();
  return ArrayField<T, C, StructCodec<Desc>, CountedBy<T, N>>{name, member, {&desc},
                                                              {count, max}};
}

template <typename T, typename C>
constexpr auto buffer(std::string_view name, C T::*member) {
  static_assert(FixedArray<C>, "buffer takes a fixed uint8_t array; vbuffer a counted one");
  return BufferField<T, C, WholeContainer>{name, member, {}};
}

template <typename T, typename C, typename N>
constexpr auto vbuffer(std::string_view name, C T::*member, N T::*length, size_t max) {
  static_assert(ArrayLike<C>, "vbuffer takes a uint8_t C array, std::array or std::vector");
  return BufferField<T, C, CountedBy<T, N>>{name, member, {length, max}};
}

template <typename T, typename C, typename Desc>
constexpr auto pointers(std::string_view name, C T::*member, const Desc& desc) {
  static_assert(FixedArray<C>, "pointers(name, member, desc) takes a fixed array");
  return PointerArrayField<T, C, StructCodec<Desc>, WholeContainer, PointerForm::kAutoAlloc>{
      name, member, {&desc}, {}};
}

template <typename T, typename C, typename N, typename Desc>
constexpr auto pointers(std::string_view name, C T::*member, N T::*count, size_t max,
                        const Desc& desc) {
  static_assert(ArrayLike<C>, "pointers takes a C array, std::array or std::vector");
  return PointerArrayField<T, C, StructCodec<Desc>, CountedBy<T, N>, PointerForm::kAutoAlloc>{
      name, member, {&desc}, {count, max}};
}

template <typename T, typename C, typename Desc>
constexpr auto pointers_plain(std::string_view name, C T::*member, const Desc& desc) {
  static_assert(FixedArray<C>, "pointers_plain takes a fixed array");
  return PointerArrayField<T, C, StructCodec<Desc>, WholeContainer, PointerForm::kPlain>{
      name, member, {&desc}, {}};
}

// ---- arrays sized by the local configuration (config_count.h) ----

template <typename T, typename C, typename S>
constexpr auto config_array(std::string_view name, C T::*member, S count) {
  detail::require_count_source<S, T>();
  static_assert(ArrayLike<C>, "config_array takes a C array, std::array or std::vector");
  using E = typename Container<C>::Elem;
  static_assert(ScalarValue<E>, "for structs, pass the element description");
  return ArrayField<T, C, ScalarCodec<E>, LocalCount<T, S>>{name, member, {}, {count}};
}

template <typename T, typename C, typename S, typename Desc>
constexpr auto config_array(std::string_view name, C T::*member, S count, const Desc& desc) {
  detail::require_count_source<S, T>();
  static_assert(ArrayLike<C>, "config_array takes a C array, std::array or std::vector");
  detail::require_describes<Desc, typename Container<C>::Elem>();
  return ArrayField<T, C, StructCodec<Desc>, LocalCount<T, S>>{name, member, {&desc}, {count}};
}

template <typename T, typename C, typename S>
constexpr auto config_buffer(std::string_view name, C T::*member, S length) {
  detail::require_count_source<S, T>();
  static_assert(ArrayLike<C>, "config_buffer takes a uint8_t C array, std::array or std::vector");
  return BufferField<T, C, LocalCount<T, S>>{name, member, {length}};
}

template <typename T, typename C, typename S, typename Desc>
constexpr auto config_pointers(std::string_view name, C T::*member, S count, const Desc& desc) {
  detail::require_count_source<S, T>();
  static_assert(ArrayLike<C>, "config_pointers takes a C array, std::array or std::vector");
  return PointerArrayField<T, C, StructCodec<Desc>, LocalCount<T, S>, PointerForm::kAutoAlloc>{
      name, member, {&desc}, {count}};
}

template <typename T, typename C, typename N, typename S>
constexpr auto config_varray(std::string_view name, C T::*member, N T::*count, S local) {
  detail::require_count_source<S, T>();
  static_assert(ArrayLike<C>, "config_varray takes a C array, std::array or std::vector");
  using E = typename Container<C>::Elem;
  static_assert(ScalarValue<E>, "for structs, pass the element description");
  return ArrayField<T, C, ScalarCodec<E>, MatchingCount<T, N, S>>{name, member, {},
                                                                  {count, local}};
}

template <typename T, typename C, typename N, typename S, typename Desc>
constexpr auto config_varray(std::string_view name, C T::*member, N T::*count, S local,
                             const Desc& desc) {
  detail::require_count_source<S, T>();
  static_assert(ArrayLike<C>, "config_varray takes a C array, std::array or std::vector");
  detail::require_describes<Desc, typename Container<C>::Elem>();
  return ArrayField<T, C, StructCodec<Desc>, MatchingCount<T, N, S>>{name, member, {&desc},
                                                                     {count, local}};
}

// ---- bytes loaded beside the live ones, committed by post_load (staged_field.h) ----

template <typename T, typename C, typename S>
constexpr auto staged_buffer(std::string_view name, C T::*member, S T::*staging) {
  static_assert(FixedArray<C>, "staged_buffer(name, member, staging) takes a fixed uint8_t "
                               "array; pass a count source for a partly sent or sized one");
  return StagedBufferField<T, C, S, WholeContainer>{name, member, staging, {}};
}

template <typename T, typename C, typename S, typename N>
constexpr auto staged_buffer(std::string_view name, C T::*member, S T::*staging, N length) {
  detail::require_count_source<N, T>();
  static_assert(ArrayLike<C>, "staged_buffer takes a uint8_t C array, std::array or std::vector");
  return StagedBufferField<T, C, S, LocalCount<T, N>>{name, member, staging, {length}};
}

template <typename T, typename C, typename Desc>
constexpr auto list(std::string_view name, C T::*member, const Desc& desc, size_t max) {
  return ListField<T, C, StructCodec<Desc>>{name, member, {&desc}, max};
}

// fill: Status(const T&, Tmp&) before saving; apply: Status(T&, const Tmp&) after loading.
template <typename T, typename TmpDesc, typename Fill, typename Apply>
constexpr auto with_tmp(std::string_view name, const TmpDesc& tmp_desc, Fill fill, Apply apply) {
  return TmpField<T, TmpDesc, Fill, Apply>{name, &tmp_desc, fill, apply};
}

constexpr UnusedField unused(size_t size) { return UnusedField{"unused", size}; }

}  // namespace ferry::vmstate
