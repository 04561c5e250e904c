# Test helpers. Labels: unit, e2e, gpu, slow.
find_package(GTest QUIET)

# sluice_gtest(name LABELS l... SOURCES s... LIBS l...)
function(sluice_gtest name)
  cmake_parse_arguments(ARG "" "" "LABELS;SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}"
    ENVIRONMENT "SLUICE_SOURCE_ROOT=${SLUICE_SOURCE_ROOT};SLUICE_SHARED_DIR=${SLUICE_SHARED_DIR}")
endfunction()
