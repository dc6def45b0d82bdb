// Description<T>: QEMU's VMStateDescription as type-checked C++. A description is a
// constexpr value built by describe<T>(name, options, fields..., subsections...); its
// fields live in a std::tuple, so save and load unroll into straight-line code.
//
//   inline constexpr auto kQueueState = vmstate::describe<QueueState>(
//       "nvme-queue", {.version = 2, .minimum_version = 1},
//       vmstate::field("head", &QueueState::head),
//       vmstate::field("size", &QueueState::size)
//           .validate([](uint16_t v) { return v >= 2; }, "queue size below 2"),
//       vmstate::field("phase", &QueueState::phase).since(2));
//
// The same description saves, loads (hostile input: every error names its path and the
// expected and found values), emits QEMU's vmdesc JSON, records snapshots (snapshot.h)
// and validates itself at registration (check()).
#pragma once

#include <array>
#include <climits>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include "base/byte_reader.h"
#include "base/byte_writer.h"
#include "base/status.h"
#include "vmstate/builders.h"
#include "vmstate/vmdesc.h"
#include "vmstate/visitors.h"
#include "vmstate/wire.h"

namespace ferry::vmstate {

template <typename T>
struct Options {
  int version = 1;
  int minimum_version = -1;  // -1: same as version
  // Hooks; a failing hook fails the whole save or load with its message.
  Status (*pre_save)(T&) = nullptr;
  Status (*post_save)(T&) = nullptr;  // runs even when the save failed
  Status (*pre_load)(T&) = nullptr;
  Status (*post_load)(T&, int version) = nullptr;
};

// Where a member is carried among a description's fields (for counts).
struct MemberInfo {
  size_t index;
  int since;
  std::string_view name;
};

struct AlwaysNeeded {
  template <typename T>
  constexpr bool operator()(const T&) const {
    return true;
  }
};

template <typename SubDesc, typename Needed>
struct Subsection {
  using Object = typename SubDesc::Object;
  const SubDesc* desc;
  Needed needed;
};

template <typename T, typename Fields, typename Subsections>
class Description;

template <typename T, typename... Fs, typename... Ss>
class Description<T, std::tuple<Fs...>, std::tuple<Ss...>> {
 public:
  using Object = T;
  static constexpr size_t kFieldCount = sizeof...(Fs);
  static constexpr size_t kSubsectionCount = sizeof...(Ss);

  constexpr Description(std::string_view name, Options<T> options, std::tuple<Fs...> fields,
                        std::tuple<Ss...> subsections)
      : name_(name),
        version_(options.version),
        minimum_version_(options.minimum_version < 0 ? options.version
                                                     : options.minimum_version),
        options_(options),
        fields_(fields),
        subsections_(subsections) {}

  constexpr std::string_view name() const { return name_; }
  constexpr int version() const { return version_; }
  constexpr int minimum_version() const { return minimum_version_; }
  constexpr const std::tuple<Fs...>& fields() const { return fields_; }
  // Staged fields (staged_field.h) need one to commit what they loaded.
  constexpr bool has_post_load() const { return options_.post_load != nullptr; }

  // ---- public entry points (errors carry the description name as the path root) ----

  Status save(T& obj, ByteSink& w) const {
    NoDesc d;
    return rooted(save_body(obj, w, d));
  }
  // Also fills `vmdesc` (an object) with this description's vmdesc JSON.
  Status save(T& obj, ByteSink& w, Json& vmdesc) const {
    VmdescWriter d(w, vmdesc);
    return rooted(save_body(obj, w, d));
  }
  Status load(T& obj, ByteReader& r, int version) const {
    // Work on a local copy of the reader: it never escapes, so its position stays in a
    // register across the allocations a load makes.
    ByteReader local = r;
    Status err;
    if (!load_body(obj, local, version, err)) [[unlikely]] err.prepend_path(name_);
    r = local;
    return err;
  }
  Status load(T& obj, ByteReader& r) const { return load(obj, r, version_); }

  // ---- the body, shared by nested structs and subsections ----

  template <typename D>
  Status save_body(T& obj, ByteSink& w, D& d) const {
    if (options_.pre_save) {
      Status st = options_.pre_save(obj);
      if (!st.ok()) return st.prepend_message(fmt::format("pre_save hook of '{}'", name_));
    }
    d.struct_begin(name_, version_);
    d.fields_begin();
    Status st = save_fields(obj, w, d, std::index_sequence_for<Fs...>{});
    d.fields_end();
    if (st.ok()) st = save_subsections(obj, w, d, std::index_sequence_for<Ss...>{});
    d.struct_end();
    if (options_.post_save) {
      Status post = options_.post_save(obj);
      if (st.ok() && !post.ok())
        st = std::move(post.prepend_message(fmt::format("post_save hook of '{}'", name_)));
    }
    return st;
  }

  // Loads fields present at `version` and any subsections; false with `err` set on failure.
  bool load_body(T& obj, ByteReader& r, int version, Status& err) const {
    if (version > version_) [[unlikely]]
      return fail(err, Error(ErrorCode::kVersionMismatch,
                             "incoming version {} of '{}' is too new for local version {}",
                             version, name_, version_));
    if (version < minimum_version_) [[unlikely]]
      return fail(err, Error(ErrorCode::kVersionMismatch,
                             "incoming version {} of '{}' is too old for local minimum version {}",
                             version, name_, minimum_version_));
    if (options_.pre_load) {
      Status st = options_.pre_load(obj);
      if (!st.ok())
        return fail(err, std::move(st.prepend_message(fmt::format("pre_load hook of '{}'", name_))));
    }
    if (!load_fields(obj, r, version, err, std::index_sequence_for<Fs...>{})) return false;
    if (!load_subsections(obj, r, err)) return false;
    if (options_.post_load) {
      Status st = options_.post_load(obj, version);
      if (!st.ok())
        return fail(err,
                    std::move(st.prepend_message(fmt::format("post_load hook of '{}'", name_))));
    }
    return true;
  }

  // ---- introspection ----

  // QEMU may fold an array of this struct into one vmdesc entry only when no part of it
  // can come and go: no subsections, and every field foldable itself.
  bool can_compress_as_element() const {
    if constexpr (sizeof...(Ss) > 0) {
      return false;
    } else {
      return std::apply([](const auto&... f) { return (f.can_compress() && ...); }, fields_);
    }
  }

  template <typename M>
  std::optional<MemberInfo> find_member(M T::*member) const {
    std::optional<MemberInfo> found;
    size_t i = 0;
    std::apply(
        [&](const auto&... f) {
          ((!found && stores(f, member) ? (found = MemberInfo{i, f.since_version, f.name}, 0)
                                         : 0,
            ++i),
           ...);
        },
        fields_);
    return found;
  }

  // Only scalar fields can carry a count; other kinds have no stores().
  template <typename F, typename M>
  static bool stores(const F& f, M T::*member) {
    if constexpr (requires { f.stores(member); }) return f.stores(member);
    else return false;
  }

  std::array<std::string_view, sizeof...(Fs)> field_names() const {
    return std::apply([](const auto&... f) { return std::array<std::string_view, sizeof...(Fs)>{f.name...}; },
                      fields_);
  }
  std::array<std::string_view, sizeof...(Ss)> subsection_names() const {
    return std::apply(
        [](const auto&... s) { return std::array<std::string_view, sizeof...(Ss)>{s.desc->name()...}; },
        subsections_);
  }

  // The name vmdesc shows for field `index`: QEMU appends "[k]" to a name that appears more
  // than once, k counting its earlier appearances.
  std::string display_name(size_t index) const {
    auto names = field_names();
    size_t same = 0, before = 0;
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] != names[index]) continue;
      ++same;
      if (i < index) ++before;
    }
    if (same == 1) return std::string(names[index]);
    return fmt::format("{}[{}]", names[index], before);
  }

  // Registration-time validation, like QEMU's vmstate_check (rules in check.h's comment).
  Status check() const {
    if (name_.empty()) return Error(ErrorCode::kInvalidArgument, "description has an empty name");
    if (name_.size() > wire::kMaxNameLength)
      return Error(ErrorCode::kInvalidArgument, "name '{}' is {} bytes, longer than {}", name_,
                   name_.size(), wire::kMaxNameLength);
    if (version_ < 0 || minimum_version_ > version_)
      return Error(ErrorCode::kInvalidArgument,
                   "'{}': minimum version {} is above version {} (or a version is negative)",
                   name_, minimum_version_, version_);
    Status st = check_fields(std::index_sequence_for<Fs...>{});
    if (st.ok()) st = check_subsections();
    if (!st.ok()) st.prepend_path(name_);
    return st;
  }

 private:
  Status rooted(Status st) const {
    if (!st.ok()) [[unlikely]] st.prepend_path(name_);
    return st;
  }

  template <typename D, size_t... I>
  Status save_fields(T& obj, ByteSink& w, D& d, std::index_sequence<I...>) const {
    Status st;
    (void)(save_field_into<I>(obj, w, d, st) && ...);
    return st;
  }

  template <size_t I, typename D>
  bool save_field_into(T& obj, ByteSink& w, D& d, Status& out) const {
    Status st = save_field<I>(obj, w, d);
    if (st.ok()) [[likely]] return true;
    out = std::move(st);
    return false;
  }
  template <size_t I, typename D>
  Status save_field(T& obj, ByteSink& w, D& d) const {
    const auto& f = std::get<I>(fields_);
    if constexpr (std::is_same_v<D, NoDesc> && requires { f.save_fast(obj, w); }) {
      f.save_fast(obj, w);
      return {};
    }
    Status st;
    if constexpr (D::kActive) {
      std::string shown = display_name(I);
      d.enter_field(shown);
      st = f.save(obj, w, d, shown);
      d.leave_field();
    } else {
      d.enter_field(f.name);
      st = f.save(obj, w, d, f.name);
      d.leave_field();
    }
    if (!st.ok()) [[unlikely]] st.prepend_path(f.name);
    return st;
  }

  template <size_t... I>
  bool load_fields(T& obj, ByteReader& r, [[maybe_unused]] int version, Status& err,
                   std::index_sequence<I...>) const {
    return (load_field<I>(obj, r, version, err) && ...);
  }

  // Forced inline: GCC's budget otherwise gives out part-way through a long field list.
  template <size_t I>
  [[gnu::always_inline]] bool load_field(T& obj, ByteReader& r, int version, Status& err) const {
    const auto& f = std::get<I>(fields_);
    if (f.since_version > version) return true;  // absent from older streams
    if (!f.load(obj, r, err)) [[unlikely]] {
      err.prepend_path(f.name);
      return false;
    }
    return true;
  }

  template <typename D, size_t... I>
  Status save_subsections(T& obj, ByteSink& w, D& d, std::index_sequence<I...>) const {
    Status st;
    (void)((st = save_subsection<I>(obj, w, d)).ok() && ...);
    return st;
  }

  template <size_t I, typename D>
  Status save_subsection(T& obj, ByteSink& w, D& d) const {
    const auto& sub = std::get<I>(subsections_);
    if (!sub.needed(static_cast<const T&>(obj))) return {};
    std::string_view sub_name = sub.desc->name();
    d.subsection_begin(sub_name);
    w.put_u8(wire::kSubsection);
    w.put_u8(static_cast<uint8_t>(sub_name.size()));
    w.put_bytes(sub_name);
    w.put_be32(static_cast<uint32_t>(sub.desc->version()));
    Status st = sub.desc->save_body(obj, w, d);
    d.subsection_end();
    if (!st.ok()) st.prepend_path(sub_name.substr(name_.size() + 1));
    return st;
  }

  // Subsections follow the fields, in any order, each at most once. A 0x05 byte followed
  // by a name outside "<name>/" is not ours (QEMU's rule: it may be the next field of an
  // enclosing struct), so loading stops there; a name inside it must be known.
  bool load_subsections(T& obj, ByteReader& r, Status& err) const {
    std::array<bool, sizeof...(Ss) + 1> seen{};
    for (;;) {
      uint8_t tag, len;
      if (!r.peek_u8(0, tag) || tag != wire::kSubsection) return true;
      // Too short to be a subsection header: not ours either; whoever reads next will
      // report the truncation.
      if (!r.peek_u8(1, len)) return true;
      auto raw = r.peek(2, len);
      if (raw.size() != len) return true;
      std::string_view sub_name(reinterpret_cast<const char*>(raw.data()), raw.size());
      if (sub_name.size() <= name_.size() || !sub_name.starts_with(name_) ||
          sub_name[name_.size()] != '/')
        return true;
      std::string child(sub_name.substr(name_.size() + 1));
      size_t index = subsection_index(sub_name);
      if (index == sizeof...(Ss))
        return fail(err, Error(ErrorCode::kCorrupt, "unknown subsection '{}' of '{}'",
                               sub_name, name_));
      if (seen[index])
        return fail(err, Error(ErrorCode::kCorrupt, "subsection '{}' appears twice", sub_name));
      seen[index] = true;
      (void)r.skip(2 + size_t{len});
      uint32_t version;
      if (!r.get_be32(version)) return fail(err, r.truncated(4).prepend_path(child));
      if (!load_subsection(obj, r, index, version, err)) {
        err.prepend_path(child);
        return false;
      }
    }
  }

  size_t subsection_index(std::string_view sub_name) const {
    auto names = subsection_names();
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == sub_name) return i;
    return names.size();
  }

  bool load_subsection(T& obj, ByteReader& r, size_t index, uint32_t version,
                       Status& err) const {
    int v = version > static_cast<uint32_t>(INT_MAX) ? INT_MAX : static_cast<int>(version);
    bool ok = false;
    size_t i = 0;
    std::apply(
        [&](const auto&... s) {
          ((i++ == index ? (ok = s.desc->load_body(obj, r, v, err), 0) : 0), ...);
        },
        subsections_);
    return ok;
  }

  template <size_t... I>
  Status check_fields(std::index_sequence<I...>) const {
    Status st;
    (void)((st = check_field<I>()).ok() && ...);
    return st;
  }

  template <size_t I>
  Status check_field() const {
    const auto& f = std::get<I>(fields_);
    if (f.name.empty()) return Error(ErrorCode::kInvalidArgument, "field {} has an empty name", I);
    if (f.since_version < 0 || f.since_version > version_)
      return Error(ErrorCode::kInvalidArgument,
                   "field '{}' is present since version {}, outside versions 0..{}", f.name,
                   f.since_version, version_);
    return f.check(*this, I);
  }

  Status check_subsections() const {
    auto names = subsection_names();
    for (size_t i = 0; i < names.size(); ++i) {
      std::string_view n = names[i];
      if (n.size() <= name_.size() + 1 || !n.starts_with(name_) || n[name_.size()] != '/')
        return Error(ErrorCode::kInvalidArgument,
                     "subsection '{}' must be named '{}/<child>'", n, name_);
      for (size_t j = 0; j < i; ++j)
        if (names[j] == n)
          return Error(ErrorCode::kInvalidArgument, "subsection '{}' is listed twice", n);
    }
    Status st;
    std::apply([&](const auto&... s) { (void)((st = s.desc->check()).ok() && ...); },
               subsections_);
    return st;
  }

  std::string_view name_;
  int version_;
  int minimum_version_;
  Options<T> options_;
  std::tuple<Fs...> fields_;
  std::tuple<Ss...> subsections_;
};

namespace detail {
template <typename X>
struct IsSubsection : std::false_type {};
template <typename D, typename N>
struct IsSubsection<Subsection<D, N>> : std::true_type {};

template <typename T, typename Item>
constexpr auto keep_field(const Item& item) {
  if constexpr (IsSubsection<Item>::value) {
    return std::tuple<>();
  } else {
    static_assert(std::is_void_v<typename Item::Object> ||
                      std::is_base_of_v<typename Item::Object, T>,
                  "a field of another type was given to this description");
    return std::tuple<Item>(item);
  }
}
template <typename T, typename Item>
constexpr auto keep_subsection(const Item& item) {
  if constexpr (IsSubsection<Item>::value) {
    static_assert(std::is_same_v<typename Item::Object, T>,
                  "a subsection describes the same type as its parent");
    return std::tuple<Item>(item);
  } else {
    return std::tuple<>();
  }
}
}  // namespace detail

// Fields and subsections may be given in one list; fields keep their order.
template <typename T, typename... Items>
constexpr auto describe(std::string_view name, Options<T> options, Items... items) {
  auto fields = std::tuple_cat(detail::keep_field<T>(items)...);
  auto subsections = std::tuple_cat(detail::keep_subsection<T>(items)...);
  return Description<T, decltype(fields), decltype(subsections)>(name, options, fields,
                                                                 subsections);
}

// A subsection sent only when `needed(object)` holds (always, without a predicate). Its
// description describes the same type and is named "<parent>/<child>".
template <typename SubDesc>
constexpr auto subsection(const SubDesc& desc) {
  return Subsection<SubDesc, AlwaysNeeded>{&desc, {}};
}
template <typename SubDesc, typename Needed>
constexpr auto subsection(const SubDesc& desc, Needed needed) {
  return Subsection<SubDesc, Needed>{&desc, needed};
}

}  // namespace ferry::vmstate
