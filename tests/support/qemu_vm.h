// QEMU 7.2 (Debian's qemu-system-x86_64) as a device under test: started stopped (-S) on
// q35 with TCG, no default devices, a qtest connection for the guest driver and a QMP
// socket. Device models process MMIO, doorbells and DMA while the CPUs are stopped, so
// the driver in the test process is the only "guest". Killed when the object goes away.
#pragma once

#include <unistd.h>

#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/child_process.h"
#include "client/qtest_client.h"
#include "support/ferry_vm.h"

namespace ferry::testing {

inline constexpr const char* kQemuBinary = "/usr/bin/qemu-system-x86_64";

inline bool qemu_installed() { return ::access(kQemuBinary, X_OK) == 0; }

class QemuVm {
 public:
  // How the VM's CPUs are set up. Stopped CPUs suit devices that work while the VM is
  // stopped (NVMe). A NIC receives only while the VM runs, so its tests run the VM with a
  // firmware of nothing but HLT (interrupts are off at reset, so the CPU halts for good):
  // no SeaBIOS re-placing BARs or rebooting after its boot timeout. (Debian's QEMU has no
  // qtest accelerator, which QEMU's own device tests use for this.)
  enum class Cpus { kStopped, kHalted };

  // `extra` is appended to the fixed options (-M q35 -accel tcg -S ...).
  static Result<std::unique_ptr<QemuVm>> start(const std::vector<std::string>& extra,
                                               Cpus cpus = Cpus::kStopped) {
    auto vm = std::unique_ptr<QemuVm>(new QemuVm());
    std::string base = unique_base("qemu");
    vm->qmp_path_ = base + ".qmp";
    auto listener = UnixListener::listen(base + ".qtest");
    if (!listener.ok()) return listener.take_status();
    std::vector<std::string> argv = {kQemuBinary, "-M", "q35", "-accel", "tcg"};
    if (cpus == Cpus::kStopped) {
      argv.push_back("-S");
    } else {
      vm->firmware_path_ = base + ".halt.bin";
      std::ofstream(vm->firmware_path_, std::ios::binary) << std::string(64 << 10, '\xf4');
      argv.insert(argv.end(), {"-bios", vm->firmware_path_});
    }
    argv.insert(argv.end(), {"-display", "none", "-nodefaults",
                             "-qmp", "unix:" + vm->qmp_path_ + ",server=on,wait=off",
                             "-qtest", "unix:" + base + ".qtest", "-qtest-log", "/dev/null"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto child = ChildProcess::spawn(argv, base + ".stderr");
    if (!child.ok()) return child.take_status();
    vm->process_.emplace(std::move(child).value());
    auto conn = listener->accept(Millis(30000));
    if (!conn.ok()) {
      return conn.take_status().prepend_message("QEMU did not connect its qtest socket (stderr: " +
                                                vm->process_->stderr_text() + "): ");
    }
    vm->qtest_.emplace(std::move(conn).value());
    return vm;
  }

  ~QemuVm() {
    qtest_.reset();
    process_.reset();  // kills and reaps QEMU
    ::unlink(qmp_path_.c_str());
    if (!firmware_path_.empty()) ::unlink(firmware_path_.c_str());
  }

  QtestClient& qtest() { return *qtest_; }
  ChildProcess& process() { return *process_; }
  const std::string& qmp_path() const { return qmp_path_; }

 private:
  QemuVm() = default;
  std::string qmp_path_;
  std::string firmware_path_;  // Cpus::kHalted's firmware
  std::optional<ChildProcess> process_;
  std::optional<QtestClient> qtest_;
};

}  // namespace ferry::testing
