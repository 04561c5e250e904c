// The CUDA runner's entry points in a build without nvcc.
#include "absl/status/status.h"
#include "engine/runner/cuda_runner.h"

namespace sluice {

bool CudaBackendBuilt() { return false; }

absl::StatusOr<std::unique_ptr<Runner>> CreateCudaRunner(const CudaRunnerOptions&,
                                                         CudaRunnerInfo*) {
  return absl::FailedPreconditionError(
      "--device cuda: this build has no CUDA backend (no nvcc was found when it was "
      "configured); rebuild where the CUDA toolkit is installed, or use --device cpu");
}

absl::StatusOr<double> MeasureCudaCopyBandwidth(int) {
  return absl::FailedPreconditionError("this build has no CUDA backend");
}

}  // namespace sluice
