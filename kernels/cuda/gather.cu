// Row gather: one CTA per output row, 16-byte chunks.
#include <string>

#include "common.cuh"
#include "sluice/kernels/cuda/gather.h"

namespace sluice::kernels::cuda {
namespace {

constexpr int kThreads = 128;

__global__ void __launch_bounds__(kThreads)
    GatherRowsKernel(uint4* out, const uint4* in, const int32_t* rows, int chunks) {
  const int64_t r = blockIdx.x;
  const int64_t src = rows[r];
  for (int c = threadIdx.x; c < chunks; c += kThreads) out[r * chunks + c] = in[src * chunks + c];
}

}  // namespace

Status GatherRows(bf16* out, const bf16* in, const int32_t* rows, int num_rows, int width,
                  cudaStream_t stream) {
  if (num_rows < 0 || width <= 0 || width % 8 != 0) {
    return Status::InvalidArgument("gather_rows: width " + std::to_string(width) +
                                   " must be a positive multiple of 8");
  }
  if (num_rows == 0) return Status::Ok();
  GatherRowsKernel<<<num_rows, kThreads, 0, stream>>>(
      reinterpret_cast<uint4*>(out), reinterpret_cast<const uint4*>(in), rows, width / 8);
  return LaunchStatus("gather_rows");
}

}  // namespace sluice::kernels::cuda
