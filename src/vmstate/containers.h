// What the array-like field kinds need to know about a member's container: C arrays and
// std::array have a fixed capacity; std::vector (and std::list/std::deque for lists)
// grow on load, bounded by a declared maximum.
#pragma once

#include <array>
#include <cstddef>
#include <deque>
#include <list>
#include <memory>
#include <type_traits>
#include <vector>

namespace ferry::vmstate {

template <typename C>
struct Container {
  static constexpr bool kIsArray = false;
};

template <typename V, size_t N>
struct Container<V[N]> {
  static constexpr bool kIsArray = true;
  static constexpr bool kFixed = true;
  static constexpr size_t kCapacity = N;
  using Elem = V;
  static size_t size(const V (&)[N]) { return N; }
  static V& at(V (&c)[N], size_t i) { return c[i]; }
  static V* data(V (&c)[N]) { return c; }
};

template <typename V, size_t N>
struct Container<std::array<V, N>> {
  static constexpr bool kIsArray = true;
  static constexpr bool kFixed = true;
  static constexpr size_t kCapacity = N;
  using Elem = V;
  static size_t size(const std::array<V, N>&) { return N; }
  static V& at(std::array<V, N>& c, size_t i) { return c[i]; }
  static V* data(std::array<V, N>& c) { return c.data(); }
};

template <typename V, typename A>
struct Container<std::vector<V, A>> {
  static constexpr bool kIsArray = true;
  static constexpr bool kFixed = false;
  static constexpr size_t kCapacity = static_cast<size_t>(-1);
  using Elem = V;
  static size_t size(const std::vector<V, A>& c) { return c.size(); }
  static V& at(std::vector<V, A>& c, size_t i) { return c[i]; }
  static V* data(std::vector<V, A>& c) { return c.data(); }
  static void resize(std::vector<V, A>& c, size_t n) { c.resize(n); }
};

template <typename C>
concept FixedArray = Container<C>::kIsArray && Container<C>::kFixed;
template <typename C>
concept ArrayLike = Container<C>::kIsArray;

template <typename C>
struct ListContainer : std::false_type {};
template <typename V, typename A>
struct ListContainer<std::list<V, A>> : std::true_type {};
template <typename V, typename A>
struct ListContainer<std::deque<V, A>> : std::true_type {};

// Pointer slots: raw (non-owning) or std::unique_ptr (owning, can be allocated on load).
template <typename P>
struct PointerSlot : std::false_type {};
template <typename E>
struct PointerSlot<E*> : std::true_type {
  using Elem = E;
  static constexpr bool kOwning = false;
  static E* get(E* p) { return p; }
};
template <typename E, typename Del>
struct PointerSlot<std::unique_ptr<E, Del>> : std::true_type {
  using Elem = E;
  static constexpr bool kOwning = true;
  static E* get(const std::unique_ptr<E, Del>& p) { return p.get(); }
};

}  // namespace ferry::vmstate
