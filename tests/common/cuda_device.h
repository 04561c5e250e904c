// The skip protocol of the GoogleTest-based GPU tests: where no CUDA device is usable, print
// the reason and exit 77 (ctest's SKIP_RETURN_CODE for the gpu label).
#pragma once

#include <cuda_runtime.h>

#include <cstdio>

namespace sluice::testing {

// True, having printed "SKIP: ..." with the driver's reason, when no CUDA device is usable.
inline bool NoCudaDevice() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err == cudaSuccess && count > 0) return false;
  std::printf("SKIP: no CUDA device (%s)\n",
              err != cudaSuccess ? cudaGetErrorString(err) : "device count 0");
  return true;
}

}  // namespace sluice::testing
