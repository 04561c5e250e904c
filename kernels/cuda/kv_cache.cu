// KV-cache write through slot_mapping and whole-block copies, 16 bytes per thread.
#include <algorithm>
#include <string>

#include "common.cuh"
#include "sluice/kernels/cuda/kv_cache.h"

namespace sluice::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// One CTA per token; threads stride over its num_kv_heads * head_dim / 8 chunks.
__global__ void __launch_bounds__(kThreads)
    WriteKvKernel(uint4* k_cache, uint4* v_cache, const uint4* k, const uint4* v,
                  const int64_t* slot_mapping, int64_t num_slots, int chunks_per_token) {
  const int t = blockIdx.x;
  const int64_t slot = slot_mapping[t];
  if (slot < 0 || slot >= num_slots) return;
  const int64_t src = int64_t{t} * chunks_per_token, dst = slot * chunks_per_token;
  for (int c = threadIdx.x; c < chunks_per_token; c += kThreads) {
    k_cache[dst + c] = k[src + c];
    v_cache[dst + c] = v[src + c];
  }
}

// grid (num_pairs, chunk groups): copies block pairs[i][0] to pairs[i][1].
__global__ void __launch_bounds__(kThreads)
    CopyBlocksKernel(uint4* k_cache, uint4* v_cache, const int32_t* pairs, int num_blocks,
                     int64_t chunks_per_block) {
  const int32_t src = pairs[2 * blockIdx.x], dst = pairs[2 * blockIdx.x + 1];
  if (src < 0 || dst < 0 || src >= num_blocks || dst >= num_blocks) return;
  for (int64_t c = blockIdx.y * kThreads + threadIdx.x; c < chunks_per_block;
       c += int64_t{gridDim.y} * kThreads) {
    k_cache[dst * chunks_per_block + c] = k_cache[src * chunks_per_block + c];
    v_cache[dst * chunks_per_block + c] = v_cache[src * chunks_per_block + c];
  }
}

Status CheckShape(const KvCacheShape& shape, const char* op) {
  if (shape.num_blocks <= 0 || shape.block_size <= 0 || shape.num_kv_heads <= 0 ||
      shape.head_dim <= 0 || (int64_t{shape.num_kv_heads} * shape.head_dim) % 8 != 0) {
    return Status::InvalidArgument(std::string(op) +
                                   ": cache shape must be positive with kv_heads * head_dim "
                                   "a multiple of 8");
  }
  return Status::Ok();
}

}  // namespace

Status WriteKvCache(bf16* k_cache, bf16* v_cache, const bf16* k, const bf16* v,
                    const int64_t* slot_mapping, int num_tokens, const KvCacheShape& shape,
                    cudaStream_t stream) {
  if (Status s = CheckShape(shape, "write_kv_cache"); !s.ok()) return s;
  if (num_tokens < 0) return Status::InvalidArgument("write_kv_cache: num_tokens < 0");
  if (num_tokens == 0) return Status::Ok();
  const int chunks = shape.num_kv_heads * shape.head_dim / 8;
  WriteKvKernel<<<num_tokens, kThreads, 0, stream>>>(
      reinterpret_cast<uint4*>(k_cache), reinterpret_cast<uint4*>(v_cache),
      reinterpret_cast<const uint4*>(k), reinterpret_cast<const uint4*>(v), slot_mapping,
      int64_t{shape.num_blocks} * shape.block_size, chunks);
  return LaunchStatus("write_kv_cache");
}

Status CopyBlocks(bf16* k_cache, bf16* v_cache, const int32_t* pairs, int num_pairs,
                  const KvCacheShape& shape, cudaStream_t stream) {
  if (Status s = CheckShape(shape, "copy_blocks"); !s.ok()) return s;
  if (num_pairs < 0) return Status::InvalidArgument("copy_blocks: num_pairs < 0");
  if (num_pairs == 0) return Status::Ok();
  const int64_t chunks = shape.BlockElems() / 8;
  const int groups = static_cast<int>(std::min<int64_t>(8, (chunks + kThreads - 1) / kThreads));
  CopyBlocksKernel<<<dim3(num_pairs, groups), kThreads, 0, stream>>>(
      reinterpret_cast<uint4*>(k_cache), reinterpret_cast<uint4*>(v_cache), pairs, shape.num_blocks,
      chunks);
  return LaunchStatus("copy_blocks");
}

}  // namespace sluice::kernels::cuda
