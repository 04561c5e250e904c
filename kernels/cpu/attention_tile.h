// Internal to kernels/cpu: the tile the vectorized paged attention hands to one thread
// (attention_fast.cc), and its versions for each ISA.
#pragma once

#include <cstdint>

#include "sluice/kernels/attention.h"

namespace sluice::kernels::cpu {

inline constexpr int kMaxTileQueries = 64;

struct TileArgs {
  const PagedAttentionParams* params;
  const int32_t* block_row;  // the sequence's block-table row
  int kv_head;
  int num_queries;        // <= kMaxTileQueries
  const float* const* q;  // [num_queries] query vectors (head_dim each)
  float* const* out;      // [num_queries] outputs
  const int* first;       // [num_queries] first position attended
  const int* last;        // [num_queries] one past the last
  const float* sinks;     // [num_queries] extra logits, or nullptr
  const float* k_cache;
  const float* v_cache;
  float* scores;       // [num_queries, row_stride] scratch
  int64_t row_stride;  // >= every last[j]
  const float** rows;  // [row_stride] scratch: V row pointers
  float* denom;        // [num_queries] scratch
};

// head_dim a multiple of 16 (AVX-512F) or 8 (AVX2 + FMA); the portable one any.
void AttendTileAvx512(const TileArgs& t);
void AttendTileAvx2(const TileArgs& t);
void AttendTilePortable(const TileArgs& t);

}  // namespace sluice::kernels::cpu
