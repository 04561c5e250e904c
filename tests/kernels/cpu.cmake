# CPU reference tests (gtest, label unit). Included from tests/kernels/CMakeLists.txt.
if(GTest_FOUND AND NOT SLUICE_KERNELS_ONLY)
  sluice_gtest(kernels_cpu_test LABELS unit
    SOURCES
      ${CMAKE_CURRENT_LIST_DIR}/attention_cpu_test.cc
      ${CMAKE_CURRENT_LIST_DIR}/attention_fast_test.cc
      ${CMAKE_CURRENT_LIST_DIR}/ops_cpu_test.cc
      ${CMAKE_CURRENT_LIST_DIR}/quant_cpu_test.cc
      ${CMAKE_CURRENT_LIST_DIR}/sampling_cpu_test.cc
    LIBS sluice_kernels)
  # The intra-op threads alone (the ThreadSanitizer stage runs this one).
  add_test(NAME kernels_thread_pool COMMAND kernels_cpu_test
    --gtest_filter=ThreadPoolTest.*:PagedAttentionFastTest.OutputDoesNotDependOnThePool)
  set_tests_properties(kernels_thread_pool PROPERTIES LABELS threads)
endif()
