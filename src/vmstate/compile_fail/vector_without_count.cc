// Must not compile: a std::vector's length is not on the wire, so it needs a count field.
#include <vector>

#include "vmstate/vmstate.h"

struct A {
  std::vector<uint32_t> v;
};
inline constexpr auto kA = ferry::vmstate::describe<A>("a", {}, ferry::vmstate::field("v", &A::v));
