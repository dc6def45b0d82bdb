// StateBinding: a description bound to one object, behind a small virtual interface, so
// the migration engine can hold every device's state in one list without knowing types.
#pragma once

#include <memory>
#include <string_view>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "base/status.h"
#include "vmstate/snapshot.h"
#include "vmstate/vmdesc.h"

namespace ferry::vmstate {

class StateBinding {
 public:
  virtual ~StateBinding() = default;
  virtual std::string_view vmsd_name() const = 0;
  virtual int version() const = 0;
  virtual int minimum_version() const = 0;
  virtual Status check() const = 0;
  virtual Status save(ByteSink& w) = 0;
  virtual Status save(ByteSink& w, Json& vmdesc) = 0;
  virtual Status load(ByteReader& r, int version) = 0;
  virtual Result<Snapshot> snapshot() = 0;
};

template <typename Desc>
class BoundState final : public StateBinding {
 public:
  BoundState(const Desc& desc, typename Desc::Object& obj) : desc_(desc), obj_(obj) {}
  std::string_view vmsd_name() const override { return desc_.name(); }
  int version() const override { return desc_.version(); }
  int minimum_version() const override { return desc_.minimum_version(); }
  Status check() const override { return desc_.check(); }
  Status save(ByteSink& w) override { return desc_.save(obj_, w); }
  Status save(ByteSink& w, Json& vmdesc) override { return desc_.save(obj_, w, vmdesc); }
  Status load(ByteReader& r, int version) override { return desc_.load(obj_, r, version); }
  Result<Snapshot> snapshot() override { return take_snapshot(desc_, obj_); }

 private:
  const Desc& desc_;
  typename Desc::Object& obj_;
};

// The description must outlive the binding (descriptions are static constants).
template <typename Desc>
std::unique_ptr<StateBinding> bind(const Desc& desc, typename Desc::Object& obj) {
  return std::make_unique<BoundState<Desc>>(desc, obj);
}

}  // namespace ferry::vmstate
