// Must not compile: the element description describes another type.
#include <array>
#include <memory>

#include "vmstate/vmstate.h"

struct A {
  int v;
};
struct B {
  int w;
};
struct Holder {
  std::array<std::unique_ptr<A>, 2> slots;
};
inline constexpr auto kB = ferry::vmstate::describe<B>("b", {}, ferry::vmstate::field("w", &B::w));
inline constexpr auto kHolder = ferry::vmstate::describe<Holder>(
    "h", {}, ferry::vmstate::pointers("slots", &Holder::slots, kB));
