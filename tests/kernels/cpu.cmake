# CPU reference tests (gtest, label unit). Included from tests/kernels/CMakeLists.txt.
if(GTest_FOUND AND NOT SLUICE_KERNELS_ONLY)
  sluice_gtest(kernels_cpu_test LABELS unit
    SOURCES
      ${CMAKE_CURRENT_LIST_DIR}/attention_cpu_test.cc
      ${CMAKE_CURRENT_LIST_DIR}/ops_cpu_test.cc
      ${CMAKE_CURRENT_LIST_DIR}/quant_cpu_test.cc
      ${CMAKE_CURRENT_LIST_DIR}/sampling_cpu_test.cc
    LIBS sluice_kernels)
endif()
