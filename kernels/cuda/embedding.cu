// Embedding gather: one CTA per token, 16-byte chunks of the table row.
#include <string>

#include "common.cuh"
#include "sluice/kernels/cuda/embedding.h"

namespace sluice::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    EmbeddingKernel(uint4* out, const int32_t* ids, const uint4* table, int vocab, int chunks) {
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  const bool valid = id >= 0 && id < vocab;
  for (int c = threadIdx.x; c < chunks; c += kThreads) {
    out[t * chunks + c] = valid ? table[int64_t{id} * chunks + c] : make_uint4(0, 0, 0, 0);
  }
}

}  // namespace

Status Embedding(bf16* out, const int32_t* ids, const bf16* table, int num_tokens, int vocab,
                 int hidden, cudaStream_t stream) {
  if (num_tokens < 0 || vocab <= 0 || hidden <= 0 || hidden % 8 != 0) {
    return Status::InvalidArgument("embedding: hidden " + std::to_string(hidden) +
                                   " must be a positive multiple of 8");
  }
  if (num_tokens == 0) return Status::Ok();
  EmbeddingKernel<<<num_tokens, kThreads, 0, stream>>>(
      reinterpret_cast<uint4*>(out), ids, reinterpret_cast<const uint4*>(table), vocab, hidden / 8);
  return LaunchStatus("embedding");
}

}  // namespace sluice::kernels::cuda
