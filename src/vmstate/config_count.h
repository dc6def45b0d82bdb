// Element counts the local configuration fixes (QEMU's VARRAY with the count taken from
// the device's properties, VMSTATE_BUFFER_UNSAFE, or a count that must equal a local
// value). Both ends were created with the same configuration, so the stream either
// carries no count at all (LocalCount) or carries one that must match it (MatchingCount).
//
// Where the local count comes from (a CountSource):
//   own_size                  the container's own size (a vector sized at creation)
//   &T::member                a local integer member, never sent
//   size_t (*)(const T&)      derived from local state (e.g. bytes for n vectors)
#pragma once

#include <cstddef>
#include <string_view>
#include <type_traits>
#include <utility>

#include "base/status.h"
#include "vmstate/codecs.h"
#include "vmstate/containers.h"
#include "vmstate/fields.h"

namespace ferry::vmstate {

// Count source: the member container's own size, as the device created it.
struct OwnSize {};
inline constexpr OwnSize own_size{};

template <typename S, typename T>
struct IsCountMember : std::false_type {};
template <typename T, typename N>
struct IsCountMember<N T::*, T>
    : std::bool_constant<std::is_integral_v<N> && !std::is_same_v<N, bool>> {};

template <typename S, typename T>
concept CountSource = std::is_same_v<S, OwnSize> || IsCountMember<S, T>::value ||
                      std::is_convertible_v<S, size_t (*)(const T&)>;

namespace detail {
template <typename T, typename C, typename S>
size_t local_count_of(const S& source, const T& obj, const C& c) {
  if constexpr (std::is_same_v<S, OwnSize>) return Container<C>::size(c);
  else if constexpr (std::is_member_object_pointer_v<S>) return static_cast<size_t>(obj.*source);
  else return source(obj);
}
}  // namespace detail

// No count in the stream: as many elements as the local configuration says. A container
// holding fewer is a bug of the device, never of the stream.
template <typename T, typename S>
struct LocalCount {
  S source;

  template <typename C>
  Status save_count(const T& obj, const C& c, size_t& n) const {
    n = detail::local_count_of(source, obj, c);
    if (n > Container<C>::size(c))
      return Error(ErrorCode::kInternal,
                   "the local configuration gives {} elements but only {} are held", n,
                   Container<C>::size(c));
    return {};
  }
  template <typename C>
  bool load_count(const T& obj, C& c, size_t& n, Status& err) const {
    n = detail::local_count_of(source, obj, c);
    if (n > Container<C>::size(c)) [[unlikely]]
      return fail(err, Error(ErrorCode::kInternal,
                             "the local configuration gives {} elements but only {} are held",
                             n, Container<C>::size(c)));
    return true;
  }
  template <typename Owner, typename C>
  Status check(const Owner&, size_t, std::string_view, int) const {
    return {};
  }
};

// The count is an earlier field of the stream (QEMU's *_EQUAL count before a VARRAY) and
// must equal the local configuration's; checked before anything is allocated.
template <typename T, typename N, typename S>
struct MatchingCount {
  static_assert(std::is_integral_v<N> && !std::is_same_v<N, bool>, "a count is an integer");
  N T::*count;
  S source;

  template <typename C>
  Status save_count(const T& obj, const C& c, size_t& n) const {
    return save_count_field(obj.*count, Container<C>::size(c), n);
  }
  template <typename C>
  bool load_count(const T& obj, C& c, size_t& n, Status& err) const {
    N v = obj.*count;
    size_t expected = detail::local_count_of(source, obj, c);
    if (std::cmp_not_equal(v, expected)) [[unlikely]]
      return fail(err, Error(ErrorCode::kCorrupt,
                             "found count {}, expected {} (the local configuration)",
                             printable(v), expected));
    n = expected;
    if constexpr (!Container<C>::kFixed) {
      Container<C>::resize(c, n);
    } else if (n > Container<C>::kCapacity) [[unlikely]] {
      return fail(err, Error(ErrorCode::kInternal,
                             "the local configuration gives {} elements but only {} are held",
                             n, Container<C>::kCapacity));
    }
    return true;
  }
  template <typename Owner, typename C>
  Status check(const Owner& owner, size_t index, std::string_view name, int since) const {
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

}  // namespace ferry::vmstate
