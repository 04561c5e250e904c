# CUDA is optional: where nvcc exists the CUDA sources compile for sm_80 and sm_90a,
# where it doesn't the CPU backend builds alone.
set(SLUICE_HAVE_CUDA OFF)
if(SLUICE_ENABLE_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Architectures are given as explicit -gencode flags: sm_90a needs the
    # arch-specific form for wgmma and setmaxnreg.
    set(CMAKE_CUDA_ARCHITECTURES OFF)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(SLUICE_HAVE_CUDA ON)
    set(SLUICE_CUDA_ARCHS "80;90a" CACHE STRING "CUDA architectures (e.g. 80;90a)")
    set(SLUICE_CUDA_GENCODE "")
    foreach(arch ${SLUICE_CUDA_ARCHS})
      list(APPEND SLUICE_CUDA_GENCODE "-gencode=arch=compute_${arch},code=sm_${arch}")
    endforeach()
    # NOTE: CMake 3.25 predates nvcc's C++20 support and knows no flag for it.
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    message(STATUS "Sluice: CUDA ${CMAKE_CUDA_COMPILER_VERSION}, archs ${SLUICE_CUDA_ARCHS}")
  else()
    message(STATUS "Sluice: no CUDA compiler, CPU backend only")
  endif()
endif()

# Applies the project's CUDA flags to a target that has .cu sources.
function(sluice_cuda_target target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:${SLUICE_CUDA_GENCODE} --expt-relaxed-constexpr -lineinfo>)
endfunction()
