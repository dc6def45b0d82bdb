// What a device battery records: one named, printable value per step, so the same battery
// run against QEMU 7.2 and against Ferry can be compared line by line.
#pragma once

#include <string>
#include <vector>

namespace ferry::testing {

struct Observation {
  std::string name;
  std::string value;
};

// The value recorded under `name`, or "(missing)".
inline std::string find_observation(const std::vector<Observation>& observations,
                                    const std::string& name) {
  for (const Observation& o : observations) {
    if (o.name == name) return o.value;
  }
  return "(missing)";
}

}  // namespace ferry::testing
