// A ferry-vm process under test: started with a QMP socket and a qtest connection, with
// helpers for PCI config space and guest memory. Killed when the object goes away.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "client/child_process.h"
#include "client/qmp_client.h"
#include "client/qtest_client.h"

namespace ferry::testing {

using namespace ::ferry::client;  // the clients live in tools/client

// A path prefix unique to this process and call, for sockets and logs.
std::string unique_base(const char* what);

// A running ferry-vm with a QMP client and a qtest connection.
class FerryVm {
 public:
  // `binary` is the ferry-vm executable; `extra` the machine's own options.
  static std::unique_ptr<FerryVm> start(const std::string& binary, std::vector<std::string> extra) {
    auto vm = std::unique_ptr<FerryVm>(new FerryVm());
    std::string base = unique_base("vm");
    vm->qmp_path_ = base + ".qmp";
    auto listener = UnixListener::listen(base + ".qtest");
    EXPECT_TRUE(listener.ok()) << listener.status().to_string();
    if (!listener.ok()) return nullptr;
    std::vector<std::string> argv = {binary, "-qmp", "unix:" + vm->qmp_path_ + ",server=on,wait=off",
                                     "-qtest", "unix:" + base + ".qtest"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto child = ChildProcess::spawn(argv, base + ".stderr");
    EXPECT_TRUE(child.ok()) << child.status().to_string();
    if (!child.ok()) return nullptr;
    vm->process_.emplace(std::move(child).value());
    auto conn = listener->accept(Millis(10000));
    EXPECT_TRUE(conn.ok()) << conn.status().to_string() << "\n" << vm->process_->stderr_text();
    if (!conn.ok()) return nullptr;
    vm->qtest_.emplace(std::move(conn).value());
    auto qmp = QmpClient::connect(vm->qmp_path_);
    EXPECT_TRUE(qmp.ok()) << qmp.status().to_string();
    if (!qmp.ok()) return nullptr;
    vm->qmp_.emplace(std::move(qmp).value());
    return vm;
  }

  QmpClient& qmp() { return *qmp_; }
  // The QMP socket, for a second client.
  const std::string& qmp_path() const { return qmp_path_; }
  QtestClient& qtest() { return *qtest_; }
  ChildProcess& process() { return *process_; }

  Json ok(const std::string& cmd, const Json& args = Json::object()) {
    auto reply = qmp_->execute(cmd, args);
    EXPECT_TRUE(reply.ok()) << reply.status().to_string();
    EXPECT_TRUE(reply.ok() && reply->contains("return")) << (reply.ok() ? reply->dump() : "");
    return reply.ok() ? (*reply)["return"] : Json();
  }

  // PCI config space through mechanism 1 (ports 0xcf8/0xcfc).
  uint32_t config_read(int slot, uint32_t offset, unsigned bits = 32) {
    uint32_t address = 0x80000000u | (uint32_t(slot) << 11) | (offset & 0xfc);
    EXPECT_TRUE(qtest_->out(32, 0xcf8, address).ok());
    auto v = qtest_->in(bits, static_cast<uint16_t>(0xcfc + (offset & 3)));
    EXPECT_TRUE(v.ok()) << v.status().to_string();
    return v.ok() ? static_cast<uint32_t>(*v) : 0;
  }
  void config_write(int slot, uint32_t offset, uint32_t value, unsigned bits = 32) {
    uint32_t address = 0x80000000u | (uint32_t(slot) << 11) | (offset & 0xfc);
    EXPECT_TRUE(qtest_->out(32, 0xcf8, address).ok());
    EXPECT_TRUE(qtest_->out(bits, static_cast<uint16_t>(0xcfc + (offset & 3)), value).ok());
  }
  uint64_t mem(unsigned bits, uint64_t addr) {
    auto v = qtest_->read(bits, addr);
    EXPECT_TRUE(v.ok()) << v.status().to_string();
    return v.ok() ? *v : 0;
  }
  void mem_write(unsigned bits, uint64_t addr, uint64_t value) {
    EXPECT_TRUE(qtest_->write(bits, addr, value).ok());
  }
  // Offset of capability `id`, walking the list from 0x34; 0 if absent.
  uint32_t find_capability(int slot, uint8_t id) {
    uint32_t at = config_read(slot, 0x34, 8);
    for (int hops = 0; at != 0 && hops < 48; ++hops) {
      if ((config_read(slot, at, 8)) == id) return at;
      at = config_read(slot, at + 1, 8);
    }
    return 0;
  }

 private:
  FerryVm() = default;
  std::string qmp_path_;
  std::optional<ChildProcess> process_;
  std::optional<QtestClient> qtest_;
  std::optional<QmpClient> qmp_;
};

}  // namespace ferry::testing
