# The emulated NVMe controller (included from src/hw/nvme/CMakeLists.txt; paths are
# relative to src/hw/nvme): library ferry_nvme and its unit tests.
add_library(ferry_nvme
  ${CMAKE_CURRENT_LIST_DIR}/controller.cc
  ${CMAKE_CURRENT_LIST_DIR}/queues.cc
  ${CMAKE_CURRENT_LIST_DIR}/admin_commands.cc
  ${CMAKE_CURRENT_LIST_DIR}/features.cc
  ${CMAKE_CURRENT_LIST_DIR}/log_pages.cc
  ${CMAKE_CURRENT_LIST_DIR}/async_events.cc
  ${CMAKE_CURRENT_LIST_DIR}/io_commands.cc
  ${CMAKE_CURRENT_LIST_DIR}/error_log.cc
  ${CMAKE_CURRENT_LIST_DIR}/nvme_properties.cc
  ${CMAKE_CURRENT_LIST_DIR}/controller_migration.cc
  ${CMAKE_CURRENT_LIST_DIR}/device_types.cc)
target_link_libraries(ferry_nvme PUBLIC ferry_nvme_dma ferry_hw_core ferry_pci ferry_allowlist ferry_block ferry_memory
                                        ferry_base)

# The tests drive the controller with the guest's NVMe driver (test_host.h): test targets
# only link ferry_guest, which knows nothing of devices.
ferry_test(nvme_test
  ${CMAKE_CURRENT_LIST_DIR}/controller_test.cc)
target_link_libraries(nvme_test PRIVATE ferry_nvme ferry_guest)

# The controller's migration description: save/load round trips of a busy controller,
# every load-time validation rule, the allowlist.
ferry_test(nvme_migration_unit_test
  ${CMAKE_CURRENT_LIST_DIR}/controller_migration_test.cc)
target_link_libraries(nvme_migration_unit_test PRIVATE ferry_nvme ferry_guest)
