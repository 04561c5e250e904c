// Host planning of paged attention: the batch's tiles (a tile is up to kBlockM rows of
// one (sequence, KV head) pair), their KV splits so that the persistent grid has enough
// work, the order of the work items over the grid, and the workspace layout.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common.cuh"
#include "paged_attention_launch.cuh"
#include "paged_attention_plan.h"

namespace sluice::kernels::cuda {
namespace {

// Fewest positions per split decode piece: fewer, longer pieces beat the merge cost at
// batch 1 (d1: 15.6 µs at 256 vs 16.7 µs at 128 on an H100, run 4 of bench/RESULTS.md).
constexpr int kDefaultDecodeMinChunk = 256;

size_t Align256(size_t x) { return (x + 255) & ~size_t{255}; }

// A tile attends to cache positions [kv_start, kv_len): kv_start is 0, or with a sliding
// window the start of its first row's window, rounded down to a K/V tile so that the
// pieces' tile boundaries stay where they are without one.
struct Tile {
  int seq, kv_head, row_begin, num_rows, kv_start, kv_len;
  int span() const { return kv_len - kv_start; }
};

// Splits tiles into work items so that a grid of `capacity` CTAs has enough of them, and
// orders the items longest first for the persistent CTAs' static round robin.
void SplitTiles(const std::vector<Tile>& tiles, int capacity, int block_n, int min_chunk,
                PagedAttentionPlan* plan, std::vector<AttentionWorkItem>* items) {
  int64_t total_kv = 0;
  for (const Tile& t : tiles) total_kv += t.span();
  int64_t chunk = INT32_MAX;
  if (static_cast<int64_t>(tiles.size()) < capacity) {
    const int64_t even = (total_kv + capacity - 1) / capacity;
    chunk = std::max<int64_t>(std::max(min_chunk, 2 * block_n),
                              (even + block_n - 1) / block_n * block_n);
  }
  for (const Tile& t : tiles) {
    const int n = static_cast<int>((t.span() + chunk - 1) / chunk);
    if (n <= 1) {
      items->push_back({t.seq, t.kv_head, t.row_begin, t.kv_start, t.kv_len, -1, -1});
      continue;
    }
    const int merge = static_cast<int>(plan->merge_items.size());
    plan->merge_items.push_back({t.seq, t.kv_head, t.row_begin, t.num_rows, plan->num_partials, n});
    for (int i = 0; i < n; ++i) {
      const int begin = static_cast<int>(t.kv_start + i * chunk);
      const int end = static_cast<int>(std::min<int64_t>(t.kv_len, begin + chunk));
      items->push_back({t.seq, t.kv_head, t.row_begin, begin, end, plan->num_partials++, merge});
    }
  }
  std::stable_sort(items->begin(), items->end(),
                   [](const AttentionWorkItem& x, const AttentionWorkItem& y) {
                     return x.kv_end - x.kv_begin > y.kv_end - y.kv_begin;
                   });
}

// Splits every tile into the same number of pieces (at most max_pieces; pieces
// past a short tile's end are empty), one cluster per tile, in tile order; no partial
// slots or merge items. Falls back to SplitTiles when nothing needs splitting.
void SplitTilesForClusters(const std::vector<Tile>& tiles, int capacity, int block_n, int min_chunk,
                           int max_pieces, PagedAttentionPlan* plan,
                           std::vector<AttentionWorkItem>* items) {
  int64_t total_kv = 0;
  int max_kv = 0;
  for (const Tile& t : tiles) {
    total_kv += t.span();
    max_kv = std::max(max_kv, t.span());
  }
  int n = 1;
  int64_t chunk = max_kv;
  if (static_cast<int64_t>(tiles.size()) < capacity && max_kv > 0) {
    const int64_t even = (total_kv + capacity - 1) / capacity;
    chunk = std::max<int64_t>(std::max(min_chunk, 2 * block_n),
                              (even + block_n - 1) / block_n * block_n);
    if ((max_kv + chunk - 1) / chunk > max_pieces) {
      const int64_t c = (max_kv + max_pieces - 1) / max_pieces;
      chunk = (c + block_n - 1) / block_n * block_n;
    }
    n = static_cast<int>((max_kv + chunk - 1) / chunk);
    // Cluster sizes are kept to powers of two (the extra pieces are empty).
    int pow2 = 1;
    while (pow2 < n) pow2 <<= 1;
    n = n > 1 ? pow2 : n;
  }
  if (n <= 1) {
    SplitTiles(tiles, capacity, block_n, INT32_MAX, plan, items);
    return;
  }
  plan->decode_cluster = n;
  for (const Tile& t : tiles) {
    for (int i = 0; i < n; ++i) {
      const int begin = static_cast<int>(std::min<int64_t>(t.kv_len, t.kv_start + i * chunk));
      const int end = static_cast<int>(std::min<int64_t>(t.kv_len, begin + chunk));
      items->push_back({t.seq, t.kv_head, t.row_begin, begin, end, i, -1});
    }
  }
}

// Reorders items (sorted longest first) so that the kernel's strided loop over a grid
// of `grid` CTAs takes them in serpentine rounds: CTA c gets the c-th item of even
// rounds and the c-th from the end of odd ones, evening out the CTAs' total work.
void Serpentine(int grid, std::vector<AttentionWorkItem>* items) {
  for (size_t r = 1; grid > 0 && r * grid < items->size(); r += 2) {
    const auto begin = items->begin() + static_cast<ptrdiff_t>(r * grid);
    const auto end =
        items->begin() + static_cast<ptrdiff_t>(std::min(items->size(), (r + 1) * grid));
    std::reverse(begin, end);
  }
}

}  // namespace

Status PlanTiles(const PagedAttentionParams& p, const int32_t* seq_lens,
                 const int32_t* cu_seqlens_q, const PagedAttentionOptions& options,
                 const AttentionVariant& dec, const AttentionVariant& pre,
                 PagedAttentionPlan* plan) {
  int num_sms = 0, device = 0, occ_dec = 0, occ_pre = 0;
  if (Status s = CudaStatus(cudaGetDevice(&device), "paged_attention: device"); !s.ok()) return s;
  if (Status s =
          CudaStatus(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device),
                     "paged_attention: SM count");
      !s.ok()) {
    return s;
  }
  if (Status s = dec.occupancy(&occ_dec); !s.ok()) return s;
  if (Status s = pre.occupancy(&occ_pre); !s.ok()) return s;

  const int group = p.num_q_heads / p.num_kv_heads;
  std::vector<Tile> dec_tiles, pre_tiles;
  for (int s = 0; s < p.num_seqs; ++s) {
    const int q_begin = cu_seqlens_q ? cu_seqlens_q[s] : s;
    const int q_len = cu_seqlens_q ? cu_seqlens_q[s + 1] - q_begin : 1;
    const int seq_len = seq_lens[s];
    if (q_len < 0 || q_len > seq_len ||
        (seq_len + p.block_size - 1) / p.block_size > p.max_blocks_per_seq) {
      return Status::InvalidArgument("paged_attention: sequence " + std::to_string(s) +
                                     " has q_len " + std::to_string(q_len) + " and seq_len " +
                                     std::to_string(seq_len) + " that do not fit its table");
    }
    if (q_len == 0) continue;
    const int rows = q_len * group;
    const bool is_decode = rows <= dec.block_m;
    const int bm = is_decode ? dec.block_m : pre.block_m;
    for (int row = 0; row < rows; row += bm) {
      const int last = std::min(row + bm, rows) - 1;
      const int kv_len = seq_len - q_len + last / group + 1;
      int kv_start = 0;
      if (p.sliding_window > 0) {
        const int block_n = is_decode ? dec.block_n : pre.block_n;
        const int first = std::max(0, seq_len - q_len + row / group - p.sliding_window + 1);
        kv_start = first / block_n * block_n;
      }
      for (int h = 0; h < p.num_kv_heads; ++h) {
        (is_decode ? dec_tiles : pre_tiles)
            .push_back({s, h, row, last - row + 1, kv_start, kv_len});
      }
    }
  }
  const int min_chunk =
      options.decode_min_chunk > 0 ? options.decode_min_chunk : kDefaultDecodeMinChunk;
  if (dec.cluster_merge) {
    SplitTilesForClusters(dec_tiles, occ_dec * num_sms, dec.block_n, min_chunk,
                          dec.max_cluster_pieces(), plan, &plan->decode_items);
  } else {
    SplitTiles(dec_tiles, occ_dec * num_sms, dec.block_n, min_chunk, plan, &plan->decode_items);
  }
  SplitTiles(pre_tiles, occ_pre * num_sms, pre.block_n, 0, plan, &plan->prefill_items);
  // Cluster-merged pieces run one per CTA (the grid is whole clusters).
  plan->decode_grid = plan->decode_cluster > 1
                          ? static_cast<int>(plan->decode_items.size())
                          : std::min<int>(plan->decode_items.size(), occ_dec * num_sms);
  plan->prefill_grid = std::min<int>(plan->prefill_items.size(), occ_pre * num_sms);
  if (plan->decode_schedule == 1 && plan->decode_cluster == 1) {
    Serpentine(plan->decode_grid, &plan->decode_items);
  }
  if (plan->prefill_schedule == 1) Serpentine(plan->prefill_grid, &plan->prefill_items);
  return Status::Ok();
}

WorkspaceLayout Layout(const PagedAttentionPlan& plan) {
  WorkspaceLayout w;
  w.decode_items = 0;
  w.prefill_items = Align256(w.decode_items + plan.decode_items.size() * sizeof(AttentionWorkItem));
  w.merge_items = Align256(w.prefill_items + plan.prefill_items.size() * sizeof(AttentionWorkItem));
  w.counters = Align256(w.merge_items + plan.merge_items.size() * sizeof(AttentionMergeItem));
  w.lse = Align256(w.counters + plan.merge_items.size() * sizeof(int32_t));
  w.partial_o = Align256(w.lse + size_t{4} * plan.num_partials * kPartialRows);
  w.total = Align256(w.partial_o + size_t{4} * plan.num_partials * kPartialRows * plan.head_dim);
  return w;
}

}  // namespace sluice::kernels::cuda
