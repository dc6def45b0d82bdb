// Must not compile: a field of another struct given to a description.
#include "vmstate/vmstate.h"

struct A {
  int v;
};
struct B {
  int w;
};
inline constexpr auto kA = ferry::vmstate::describe<A>("a", {}, ferry::vmstate::field("w", &B::w));
