# PRP/SGL data pointers and namespaces (included from src/hw/nvme/CMakeLists.txt; paths
# are relative to src/hw/nvme): library ferry_nvme_dma and its unit tests.
add_library(ferry_nvme_dma
  ${CMAKE_CURRENT_LIST_DIR}/dma.cc
  ${CMAKE_CURRENT_LIST_DIR}/namespace.cc)
target_link_libraries(ferry_nvme_dma PUBLIC ferry_dma ferry_memory ferry_block ferry_base)

ferry_test(nvme_dma_test
  ${CMAKE_CURRENT_LIST_DIR}/dma_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/namespace_test.cc)
target_link_libraries(nvme_dma_test PRIVATE ferry_nvme_dma)
