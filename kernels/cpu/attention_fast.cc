// The CPU backend's paged attention: the reference's math in tiles that read each K and
// V row once per GQA group and run of query tokens, vectorized for the CPU it runs on
// (AVX-512F, AVX2 + FMA, or portable C++), and spread over a ThreadPool.
#include <math.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "attention_tile.h"
#include "sluice/kernels/attention.h"

namespace sluice::kernels::cpu {
namespace {

struct Vec {
  static float Dot(const float* a, const float* b, int d) {
    float acc = 0.0f;
    for (int i = 0; i < d; ++i) acc += a[i] * b[i];
    return acc;
  }
  static float ExpShift(float* x, int n, float shift) {
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) {
      x[i] = expf(x[i] - shift);
      sum += x[i];
    }
    return sum;
  }
  static void WeightedSum(float* out, int d, const float* w, const float* const* rows, int n,
                          float scale) {
    for (int c = 0; c < d; ++c) out[c] = 0.0f;
    for (int i = 0; i < n; ++i) {
      for (int c = 0; c < d; ++c) out[c] += w[i] * rows[i][c];
    }
    for (int c = 0; c < d; ++c) out[c] *= scale;
  }
};

}  // namespace

#include "attention_tile.inc"

void AttendTilePortable(const TileArgs& t) { AttendTileImpl(t); }

namespace {

using TileFn = void (*)(const TileArgs&);

TileFn Pick(CpuIsa isa, int head_dim) {
#if defined(__x86_64__)
  const bool avx512 = __builtin_cpu_supports("avx512f") && head_dim % 16 == 0;
  const bool avx2 =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && head_dim % 8 == 0;
  if ((isa == CpuIsa::kBest || isa == CpuIsa::kAvx512) && avx512) return AttendTileAvx512;
  if ((isa == CpuIsa::kBest || isa == CpuIsa::kAvx2) && avx2) return AttendTileAvx2;
  if (isa == CpuIsa::kAvx512 || isa == CpuIsa::kAvx2) return nullptr;
#else
  if (isa == CpuIsa::kAvx512 || isa == CpuIsa::kAvx2) return nullptr;
#endif
  return AttendTilePortable;
}

// A tile: sequence s, KV head h, query tokens [t0, t1) of s.
struct Tile {
  int s, h, t0, t1;
  SequenceQueries seq;  // s's, as checked when the tile was made
};

}  // namespace

bool HasCpuIsa(CpuIsa isa, int head_dim) { return Pick(isa, head_dim) != nullptr; }

Status PagedAttentionFast(const PagedAttentionParams& p, float* out, const float* q,
                          const float* k_cache, const float* v_cache, ThreadPool* pool,
                          CpuIsa isa) {
  if (Status s = ValidatePagedAttention(p); !s.ok()) return s;
  const TileFn attend = Pick(isa, p.head_dim);
  if (attend == nullptr) return Status::InvalidArgument("paged_attention: ISA not available");
  const int group = p.num_q_heads / p.num_kv_heads;
  // A group wider than a tile (more than 64 query heads a KV head) takes the reference.
  if (group > kMaxTileQueries) return PagedAttention(p, out, q, k_cache, v_cache);
  const int tokens_per_tile = std::max(1, std::min(16, kMaxTileQueries / group));
  // The tiles, kept across calls so that a steady state allocates nothing.
  thread_local std::vector<Tile> caller_tiles;
  std::vector<Tile>& tiles = caller_tiles;  // (the workers read the caller's)
  tiles.clear();
  for (int s = 0; s < p.num_seqs; ++s) {
    SequenceQueries sq;
    if (Status st = GetSequenceQueries(p, s, &sq); !st.ok()) return st;
    for (int t0 = 0; t0 < sq.q_len; t0 += tokens_per_tile) {
      for (int h = 0; h < p.num_kv_heads; ++h) {
        tiles.push_back({s, h, t0, std::min(sq.q_len, t0 + tokens_per_tile), sq});
      }
    }
  }
  const int64_t token_stride = int64_t{p.num_q_heads} * p.head_dim;
  auto run = [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    thread_local std::vector<const float*> rows;
    float denom[kMaxTileQueries];
    for (int64_t i = begin; i < end; ++i) {
      const Tile& tile = tiles[i];
      const int q_begin = tile.seq.q_begin, q_len = tile.seq.q_len, seq_len = tile.seq.seq_len;
      const float* qs[kMaxTileQueries];
      float* outs[kMaxTileQueries];
      int first[kMaxTileQueries], last[kMaxTileQueries];
      float sinks[kMaxTileQueries];
      int n = 0;
      for (int t = tile.t0; t < tile.t1; ++t) {
        const int kv_len = seq_len - q_len + t + 1;
        for (int g = 0; g < group; ++g, ++n) {
          const int head = tile.h * group + g;
          const int64_t off = (q_begin + t) * token_stride + int64_t{head} * p.head_dim;
          qs[n] = q + off;
          outs[n] = out + off;
          last[n] = kv_len;
          first[n] = p.sliding_window > 0 ? std::max(0, kv_len - p.sliding_window) : 0;
          // As the reference: a sink that is not finite is no sink.
          sinks[n] = p.sinks != nullptr && std::isfinite(p.sinks[head]) ? p.sinks[head] : -INFINITY;
        }
      }
      const int64_t stride = last[n - 1];  // the tile's last token reads the most
      if (scores.size() < static_cast<size_t>(n * stride)) scores.resize(n * stride);
      if (rows.size() < static_cast<size_t>(stride)) rows.resize(stride);
      TileArgs a{&p,
                 p.block_tables + int64_t{tile.s} * p.max_blocks_per_seq,
                 tile.h,
                 n,
                 qs,
                 outs,
                 first,
                 last,
                 p.sinks != nullptr ? sinks : nullptr,
                 k_cache,
                 v_cache,
                 scores.data(),
                 stride,
                 rows.data(),
                 denom};
      attend(a);
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(static_cast<int64_t>(tiles.size()), 1, run);
  } else {
    run(0, static_cast<int64_t>(tiles.size()));
  }
  return Status::Ok();
}

}  // namespace sluice::kernels::cpu
