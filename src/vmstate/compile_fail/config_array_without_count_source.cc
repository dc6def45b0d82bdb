// Must not compile: an array sized by the local configuration names where its count comes
// from (own_size, a local member or a function); the element description is not one.
#include <vector>

#include "vmstate/vmstate.h"

struct E {
  uint32_t x = 0;
};
inline constexpr auto kE = ferry::vmstate::describe<E>("e", {}, ferry::vmstate::field("x", &E::x));
struct A {
  std::vector<E> v;
};
inline constexpr auto kA =
    ferry::vmstate::describe<A>("a", {}, ferry::vmstate::config_array("v", &A::v, kE));
