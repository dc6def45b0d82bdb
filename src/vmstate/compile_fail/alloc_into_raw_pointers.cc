// Must not compile: allocation on load needs owning slots (QEMU's rule "pointer array
// with allocation but no element size" becomes a type error here).
#include "vmstate/vmstate.h"

struct Elem {
  int v;
};
struct Holder {
  Elem* slots[4];
};
inline constexpr auto kElem = ferry::vmstate::describe<Elem>("e", {}, ferry::vmstate::field("v", &Elem::v));
inline constexpr auto kHolder = ferry::vmstate::describe<Holder>(
    "h", {}, ferry::vmstate::pointers("slots", &Holder::slots, kElem));
