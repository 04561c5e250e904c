// Host side of paged attention: planning (tiles, KV splits, persistent grid), plan
// upload, the two launches (decode and prefill configurations) and the merge of split
// tiles by log-sum-exp.
#include <algorithm>
#include <string>
#include <vector>

#include "common.cuh"
#include "paged_attention_kernel.cuh"
#include "sluice/kernels/cuda/attention.h"

namespace sluice::kernels::cuda {
namespace {

// Decode configurations (decode variant ids of PagedAttentionOptions): one row tile of
// up to 16 rows, the K/V tile split over kWarpsN warps.
template <int D, int kVariant>
struct DecodeVariant;
// 4 warps, 64-position tiles, 3 stages, 2 CTAs per multiprocessor (runs 1-3).
template <int D>
struct DecodeVariant<D, 0> {
  using Config = AttentionConfig<D, 1, 4, 64, 3, 2>;
};
// The same with the short-chain head and one-pass merge tail.
template <int D>
struct DecodeVariant<D, 1> {
  using Config = AttentionConfig<D, 1, 4, 64, 3, 2, false, false, true>;
};
// 5 stages (a 256-position piece is in flight at once), one CTA per multiprocessor.
template <int D>
struct DecodeVariant<D, 2> {
  using Config = AttentionConfig<D, 1, 4, 64, 5, 1, false, false, true>;
};
// 8 warps over 128-position tiles, 3 stages, one CTA per multiprocessor.
template <int D>
struct DecodeVariant<D, 3> {
  using Config = AttentionConfig<D, 1, 8, 128, 3, 1, false, false, true>;
};
// d1, with the pieces of a split tile as one cluster merging in distributed shared
// memory (sm_90).
template <int D>
struct DecodeVariant<D, 4> {
  using Config = AttentionConfig<D, 1, 4, 64, 3, 2, false, false, true, true>;
};
// d1 with the lean tail (one acquire-release atomic) and the work items in the kernel
// parameters.
template <int D>
struct DecodeVariant<D, 5> {
  using Config =
      AttentionConfig<D, 1, 4, 64, 3, 2, false, false, true, false, true, false, true>;
};
// d3 (8 warps over 128-position tiles, the whole 256-position piece in flight at once)
// with the lean tail and the work items in the kernel parameters.
template <int D>
struct DecodeVariant<D, 6> {
  using Config =
      AttentionConfig<D, 1, 8, 128, 3, 1, false, false, true, false, true, false, true>;
};
// d1 with the lean tail only (items read from the workspace as in d1).
template <int D>
struct DecodeVariant<D, 7> {
  using Config = AttentionConfig<D, 1, 4, 64, 3, 2, false, false, true, false, true>;
};
static_assert(kNumDecodeVariants == 8);
constexpr int kClusterDecodeVariant = 4;
// Most pieces of a cluster-merged tile (the non-portable cluster size of Hopper).
constexpr int kMaxClusterPieces = 16;

// Prefill configurations (variant ids of PagedAttentionOptions): rows per CTA, K/V tile,
// stages and CTAs per multiprocessor. Only head_dim 128 offers the alternatives.
template <int D, int kVariant>
struct PrefillVariant;
template <int D>
struct PrefillVariant<D, 0> {
  using Config = AttentionConfig<D, 4, 1, 64, 2, 2>;
};
template <>
struct PrefillVariant<128, 1> {
  using Config = AttentionConfig<128, 4, 1, 32, 3, 3>;
};
template <>
struct PrefillVariant<128, 2> {
  using Config = AttentionConfig<128, 8, 1, 64, 2, 1>;
};
template <>
struct PrefillVariant<128, 3> {
  using Config = AttentionConfig<128, 4, 1, 64, 2, 2, true>;
};
template <>
struct PrefillVariant<128, 4> {
  using Config = AttentionConfig<128, 8, 1, 64, 2, 1, true>;
};
template <>
struct PrefillVariant<128, 5> {
  using Config = AttentionConfig<128, 8, 1, 64, 4, 1, true, true>;
};
template <>
struct PrefillVariant<128, 6> {
  using Config = AttentionConfig<128, 4, 1, 64, 2, 3, true>;
};
template <>
struct PrefillVariant<128, 7> {
  using Config = AttentionConfig<128, 4, 1, 64, 3, 2, true, true>;
};
template <>
struct PrefillVariant<128, 8> {
  using Config = AttentionConfig<128, 8, 1, 64, 6, 1, true, true>;
};
// v5 with the lazy rescale: most tiles skip the 64 multiplies of O and the running sums'
// rescale.
template <>
struct PrefillVariant<128, 9> {
  using Config =
      AttentionConfig<128, 8, 1, 64, 4, 1, true, true, false, false, false, true>;
};
static_assert(kNumPrefillVariants == 10);
constexpr int kFirstWgmmaVariant = 3;
// Defaults: the fastest variant bench/kernels measured (see kernels/cuda/NOTES.md), the
// Hopper one where the binary and device have sm_90a.
constexpr int kDefaultPrefillVariant = 2;
constexpr int kDefaultHopperPrefillVariant = 5;
// Fewest positions per split decode piece: fewer, longer pieces beat the merge cost at
// batch 1 (d1: 15.6 µs at 256 vs 16.7 µs at 128 on an H100, run 4 of bench/RESULTS.md).
constexpr int kDefaultDecodeMinChunk = 256;
// d1 with the lean tail: 15.30 / 15.55 µs vs d1's 15.52 / 15.84 µs at batch 1 in the two
// passes of run 5, the same at batch 64 (0.979 of copy). d5 (inline items) and d6 (8
// warps) measured the same within noise at batch 1; d6 has the smaller fixed cost (L=256:
// 9.4 vs 11.4 µs) but 0.967 at batch 64.
constexpr int kDefaultDecodeVariant = 7;
// Item order over the persistent grid (0 longest first round robin, 1 serpentine): the
// serpentine order measured +1.4 % (GQA) and +2.9 % (MHA) on prefill v5 in run 4; decode
// items keep round robin (the bench's decode items are all equal, so it measured nothing).
constexpr int kDefaultPrefillSchedule = 1;
constexpr int kDefaultDecodeSchedule = 0;

// Calls fn.template operator()<Config>() with the prefill configuration of variant v.
template <int D, class Fn>
Status WithPrefillConfig(int v, Fn&& fn) {
  if constexpr (D == 128) {
    switch (v) {
      case 1:
        return fn.template operator()<typename PrefillVariant<128, 1>::Config>();
      case 2:
        return fn.template operator()<typename PrefillVariant<128, 2>::Config>();
      case 3:
        return fn.template operator()<typename PrefillVariant<128, 3>::Config>();
      case 4:
        return fn.template operator()<typename PrefillVariant<128, 4>::Config>();
      case 5:
        return fn.template operator()<typename PrefillVariant<128, 5>::Config>();
      case 6:
        return fn.template operator()<typename PrefillVariant<128, 6>::Config>();
      case 7:
        return fn.template operator()<typename PrefillVariant<128, 7>::Config>();
      case 8:
        return fn.template operator()<typename PrefillVariant<128, 8>::Config>();
      case 9:
        return fn.template operator()<typename PrefillVariant<128, 9>::Config>();
      default:
        break;
    }
  }
  return fn.template operator()<typename PrefillVariant<D, 0>::Config>();
}

// Calls fn.template operator()<Config>() with the decode configuration of variant v.
template <int D, class Fn>
Status WithDecodeConfig(int v, Fn&& fn) {
  switch (v) {
    case 1:
      return fn.template operator()<typename DecodeVariant<D, 1>::Config>();
    case 2:
      return fn.template operator()<typename DecodeVariant<D, 2>::Config>();
    case 3:
      return fn.template operator()<typename DecodeVariant<D, 3>::Config>();
    case 4:
      return fn.template operator()<typename DecodeVariant<D, 4>::Config>();
    case 5:
      return fn.template operator()<typename DecodeVariant<D, 5>::Config>();
    case 6:
      return fn.template operator()<typename DecodeVariant<D, 6>::Config>();
    case 7:
      return fn.template operator()<typename DecodeVariant<D, 7>::Config>();
    default:
      return fn.template operator()<typename DecodeVariant<D, 0>::Config>();
  }
}

// Raises the kernel's dynamic shared-memory limit once, then reports how many of its
// CTAs fit on one multiprocessor.
template <class C>
Status RaiseSmemLimit() {
  static const cudaError_t err =
      cudaFuncSetAttribute(PagedAttentionKernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(C::kSmemBytes));
  return CudaStatus(err, "paged_attention: raising the shared-memory limit");
}

template <class C>
Status Occupancy(int* ctas_per_sm) {
  if (Status s = RaiseSmemLimit<C>(); !s.ok()) return s;
  return CudaStatus(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                        ctas_per_sm, PagedAttentionKernel<C>, C::kThreads, C::kSmemBytes),
                    "paged_attention: occupancy");
}

// Most pieces per cluster that the device schedules for configuration C (16 where a
// non-portable cluster of 16 fits, else 8).
template <class C>
int MaxClusterPieces() {
  static const int pieces = [] {
    if (!RaiseSmemLimit<C>().ok() ||
        cudaFuncSetAttribute(PagedAttentionKernel<C>,
                             cudaFuncAttributeNonPortableClusterSizeAllowed, 1) != cudaSuccess) {
      cudaGetLastError();
      return 8;
    }
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(kMaxClusterPieces);
    config.blockDim = dim3(C::kThreads);
    config.dynamicSmemBytes = C::kSmemBytes;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = kMaxClusterPieces;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    config.attrs = attr;
    config.numAttrs = 1;
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, PagedAttentionKernel<C>, &config) !=
        cudaSuccess) {
      cudaGetLastError();  // a refused size is not an error here
      return 8;
    }
    return clusters > 0 ? kMaxClusterPieces : 8;
  }();
  return pieces;
}

// Whether this binary carries sm_90a machine code for the wgmma kernels (a build for
// other targets only has traps there).
bool WgmmaBuilt() {
  static const bool built = [] {
    cudaFuncAttributes attr;
    return cudaFuncGetAttributes(
               &attr, PagedAttentionKernel<PrefillVariant<128, kFirstWgmmaVariant>::Config>) ==
               cudaSuccess &&
           attr.binaryVersion == 90;
  }();
  return built;
}

struct WorkspaceLayout {
  size_t decode_items, prefill_items, merge_items, counters, lse, partial_o, total;
};

size_t Align256(size_t x) { return (x + 255) & ~size_t{255}; }

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

struct Tile {
  int seq, kv_head, row_begin, num_rows, kv_len;
};

// Splits tiles into work items so that a grid of `capacity` CTAs has enough of them, and
// orders the items longest first for the persistent CTAs' static round robin.
void SplitTiles(const std::vector<Tile>& tiles, int capacity, int block_n, int min_chunk,
                PagedAttentionPlan* plan, std::vector<AttentionWorkItem>* items) {
  int64_t total_kv = 0;
  for (const Tile& t : tiles) total_kv += t.kv_len;
  int64_t chunk = INT32_MAX;
  if (static_cast<int64_t>(tiles.size()) < capacity) {
    const int64_t even = (total_kv + capacity - 1) / capacity;
    chunk = std::max<int64_t>(std::max(min_chunk, 2 * block_n),
                              (even + block_n - 1) / block_n * block_n);
  }
  for (const Tile& t : tiles) {
    const int n = static_cast<int>((t.kv_len + chunk - 1) / chunk);
    if (n <= 1) {
      items->push_back({t.seq, t.kv_head, t.row_begin, 0, t.kv_len, -1, -1});
      continue;
    }
    const int merge = static_cast<int>(plan->merge_items.size());
    plan->merge_items.push_back({t.seq, t.kv_head, t.row_begin, t.num_rows, plan->num_partials, n});
    for (int i = 0; i < n; ++i) {
      const int begin = static_cast<int>(i * chunk);
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
    total_kv += t.kv_len;
    max_kv = std::max(max_kv, t.kv_len);
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
      const int begin = static_cast<int>(std::min<int64_t>(t.kv_len, i * chunk));
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

template <int D, class Dec, class Pre>
Status PlanForHeadDim(const PagedAttentionParams& p, const int32_t* seq_lens,
                      const int32_t* cu_seqlens_q, const PagedAttentionOptions& options,
                      PagedAttentionPlan* plan) {
  int num_sms = 0, device = 0, occ_dec = 0, occ_pre = 0;
  if (Status s = CudaStatus(cudaGetDevice(&device), "paged_attention: device"); !s.ok()) return s;
  if (Status s =
          CudaStatus(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device),
                     "paged_attention: SM count");
      !s.ok()) {
    return s;
  }
  if (Status s = Occupancy<Dec>(&occ_dec); !s.ok()) return s;
  if (Status s = Occupancy<Pre>(&occ_pre); !s.ok()) return s;

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
    const bool is_decode = rows <= Dec::kBlockM;
    const int bm = is_decode ? Dec::kBlockM : Pre::kBlockM;
    for (int row = 0; row < rows; row += bm) {
      const int last = std::min(row + bm, rows) - 1;
      const int kv_len = seq_len - q_len + last / group + 1;
      for (int h = 0; h < p.num_kv_heads; ++h) {
        (is_decode ? dec_tiles : pre_tiles).push_back({s, h, row, last - row + 1, kv_len});
      }
    }
  }
  const int min_chunk =
      options.decode_min_chunk > 0 ? options.decode_min_chunk : kDefaultDecodeMinChunk;
  if constexpr (Dec::kClusterMerge) {
    SplitTilesForClusters(dec_tiles, occ_dec * num_sms, Dec::kBlockN, min_chunk,
                          MaxClusterPieces<Dec>(), plan, &plan->decode_items);
  } else {
    SplitTiles(dec_tiles, occ_dec * num_sms, Dec::kBlockN, min_chunk, plan, &plan->decode_items);
  }
  SplitTiles(pre_tiles, occ_pre * num_sms, Pre::kBlockN, 0, plan, &plan->prefill_items);
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

// cluster > 1: CTAs in clusters of that many (the cluster-merge decode configuration).
// inline_items (kInlineItems configurations, at most kMaxInlineItems items): the host
// copy of the items, passed in the kernel parameters.
template <class C>
Status LaunchConfig(const AttentionKernelArgs& args, int grid, cudaStream_t stream,
                    int cluster = 1, const AttentionWorkItem* inline_items = nullptr) {
  if (args.num_items == 0) return Status::Ok();
  if (Status s = RaiseSmemLimit<C>(); !s.ok()) return s;
  if constexpr (C::kInlineItems) {
    if (inline_items != nullptr && args.num_items <= kMaxInlineItems) {
      static const cudaError_t raised = cudaFuncSetAttribute(
          PagedAttentionInlineKernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize,
          static_cast<int>(C::kSmemBytes));
      if (Status s = CudaStatus(raised, "paged_attention: raising the shared-memory limit");
          !s.ok()) {
        return s;
      }
      AttentionInlineItems items{};
      std::copy(inline_items, inline_items + args.num_items, items.items);
      PagedAttentionInlineKernel<C><<<grid, C::kThreads, C::kSmemBytes, stream>>>(args, items);
      return LaunchStatus("paged_attention (inline items)");
    }
  }
  if (cluster <= 1) {
    PagedAttentionKernel<C><<<grid, C::kThreads, C::kSmemBytes, stream>>>(args);
    return LaunchStatus("paged_attention");
  }
  static const cudaError_t allowed = cudaFuncSetAttribute(
      PagedAttentionKernel<C>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  if (Status s = CudaStatus(allowed, "paged_attention: cluster size"); !s.ok()) return s;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(grid);
  config.blockDim = dim3(C::kThreads);
  config.dynamicSmemBytes = C::kSmemBytes;
  config.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = cluster;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  config.attrs = attr;
  config.numAttrs = 1;
  return CudaStatus(cudaLaunchKernelEx(&config, PagedAttentionKernel<C>, args),
                    "paged_attention (clusters)");
}

template <int D>
Status LaunchForHeadDim(const PagedAttentionPlan& plan, const PagedAttentionParams& p, bf16* out,
                        const bf16* q, const bf16* k_cache, const bf16* v_cache, void* workspace,
                        cudaStream_t stream) {
  const WorkspaceLayout w = Layout(plan);
  char* ws = static_cast<char*>(workspace);
  AttentionKernelArgs args;
  args.block_tables = p.block_tables;
  args.seq_lens = p.seq_lens;
  args.cu_seqlens_q = p.cu_seqlens_q;
  args.max_blocks_per_seq = p.max_blocks_per_seq;
  args.block_size = p.block_size;
  args.block_shift = (p.block_size & (p.block_size - 1)) == 0 ? __builtin_ctz(p.block_size) : -1;
  args.num_q_heads = p.num_q_heads;
  args.num_kv_heads = p.num_kv_heads;
  args.group = p.num_q_heads / p.num_kv_heads;
  args.scale_log2 = p.scale * 1.4426950408889634f;
  args.q = Nv(q);
  args.out = Nv(out);
  args.k_cache = Nv(k_cache);
  args.v_cache = Nv(v_cache);
  args.partial_lse = reinterpret_cast<float*>(ws + w.lse);
  args.partial_o = reinterpret_cast<float*>(ws + w.partial_o);
  args.merges = reinterpret_cast<const AttentionMergeItem*>(ws + w.merge_items);
  args.merge_counters = reinterpret_cast<int32_t*>(ws + w.counters);

  args.items = reinterpret_cast<const AttentionWorkItem*>(ws + w.decode_items);
  args.num_items = static_cast<int>(plan.decode_items.size());
  if (Status s = WithDecodeConfig<D>(plan.decode_variant,
                                     [&]<class C>() {
                                       return LaunchConfig<C>(args, plan.decode_grid, stream,
                                                              plan.decode_cluster,
                                                              plan.decode_items.data());
                                     });
      !s.ok()) {
    return s;
  }
  args.items = reinterpret_cast<const AttentionWorkItem*>(ws + w.prefill_items);
  args.num_items = static_cast<int>(plan.prefill_items.size());
  if (Status s = WithPrefillConfig<D>(
          plan.prefill_variant,
          [&]<class C>() { return LaunchConfig<C>(args, plan.prefill_grid, stream); });
      !s.ok()) {
    return s;
  }
  return Status::Ok();
}

}  // namespace

Status PlanPagedAttention(const PagedAttentionParams& p, const int32_t* seq_lens_host,
                          const int32_t* cu_seqlens_q_host, PagedAttentionPlan* plan,
                          const PagedAttentionOptions& options) {
  if (Status s = ValidatePagedAttention(p); !s.ok()) return s;
  if (p.num_seqs > 0 && seq_lens_host == nullptr) {
    return Status::InvalidArgument("paged_attention: plan needs the host copy of seq_lens");
  }
  if ((p.cu_seqlens_q == nullptr) != (cu_seqlens_q_host == nullptr)) {
    return Status::InvalidArgument("paged_attention: cu_seqlens_q given on only one side");
  }
  if (options.prefill_variant >= kNumPrefillVariants) {
    return Status::InvalidArgument("paged_attention: no prefill variant " +
                                   std::to_string(options.prefill_variant));
  }
  if (options.decode_variant >= kNumDecodeVariants || options.schedule > 1) {
    return Status::InvalidArgument("paged_attention: no decode variant " +
                                   std::to_string(options.decode_variant) + " or schedule " +
                                   std::to_string(options.schedule));
  }
  int device = 0, major = 0;
  if (Status s = CudaStatus(cudaGetDevice(&device), "paged_attention: device"); !s.ok()) return s;
  if (Status s =
          CudaStatus(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
                     "paged_attention: compute capability");
      !s.ok()) {
    return s;
  }
  const bool has_wgmma = major == 9 && WgmmaBuilt();
  if (options.prefill_variant >= kFirstWgmmaVariant && !has_wgmma) {
    return Status::Unsupported("paged_attention: wgmma prefill variants need sm_90a code");
  }
  if (options.decode_variant == kClusterDecodeVariant && major < 9) {
    return Status::Unsupported("paged_attention: cluster decode variants need sm_90");
  }
  *plan = PagedAttentionPlan();
  plan->head_dim = p.head_dim;
  if (p.head_dim != 128) {
    plan->prefill_variant = 0;
  } else if (options.prefill_variant >= 0) {
    plan->prefill_variant = options.prefill_variant;
  } else {
    plan->prefill_variant = has_wgmma ? kDefaultHopperPrefillVariant : kDefaultPrefillVariant;
  }
  plan->decode_variant =
      options.decode_variant >= 0 ? options.decode_variant : kDefaultDecodeVariant;
  plan->decode_schedule = options.schedule >= 0 ? options.schedule : kDefaultDecodeSchedule;
  plan->prefill_schedule = options.schedule >= 0 ? options.schedule : kDefaultPrefillSchedule;
  Status s;
  if (p.head_dim == 64) {
    s = WithDecodeConfig<64>(plan->decode_variant, [&]<class Dec>() {
      return PlanForHeadDim<64, Dec, PrefillVariant<64, 0>::Config>(
          p, seq_lens_host, cu_seqlens_q_host, options, plan);
    });
  } else if (p.head_dim == 128) {
    s = WithDecodeConfig<128>(plan->decode_variant, [&]<class Dec>() {
      return WithPrefillConfig<128>(plan->prefill_variant, [&]<class Pre>() {
        return PlanForHeadDim<128, Dec, Pre>(p, seq_lens_host, cu_seqlens_q_host, options, plan);
      });
    });
  } else {
    return Status::Unsupported("paged_attention: head_dim " + std::to_string(p.head_dim) +
                               " (64 and 128 are supported)");
  }
  if (!s.ok()) return s;
  plan->workspace_bytes = Layout(*plan).total;
  return Status::Ok();
}

Status UploadPagedAttentionPlan(const PagedAttentionPlan& plan, void* workspace,
                                size_t workspace_bytes, cudaStream_t stream) {
  const WorkspaceLayout w = Layout(plan);
  if (workspace_bytes < w.total) {
    return Status::InvalidArgument("paged_attention: workspace of " +
                                   std::to_string(workspace_bytes) + " bytes, plan needs " +
                                   std::to_string(w.total));
  }
  char* ws = static_cast<char*>(workspace);
  auto copy = [&](size_t off, const void* src, size_t bytes) {
    if (bytes == 0) return cudaSuccess;
    return cudaMemcpyAsync(ws + off, src, bytes, cudaMemcpyHostToDevice, stream);
  };
  cudaError_t err = copy(w.decode_items, plan.decode_items.data(),
                         plan.decode_items.size() * sizeof(AttentionWorkItem));
  if (err == cudaSuccess) {
    err = copy(w.prefill_items, plan.prefill_items.data(),
               plan.prefill_items.size() * sizeof(AttentionWorkItem));
  }
  if (err == cudaSuccess) {
    err = copy(w.merge_items, plan.merge_items.data(),
               plan.merge_items.size() * sizeof(AttentionMergeItem));
  }
  if (err == cudaSuccess && !plan.merge_items.empty()) {
    err = cudaMemsetAsync(ws + w.counters, 0, plan.merge_items.size() * sizeof(int32_t), stream);
  }
  return CudaStatus(err, "paged_attention: plan upload");
}

Status PagedAttention(const PagedAttentionPlan& plan, const PagedAttentionParams& p, bf16* out,
                      const bf16* q, const bf16* k_cache, const bf16* v_cache, void* workspace,
                      cudaStream_t stream) {
  if (p.head_dim != plan.head_dim) {
    return Status::InvalidArgument("paged_attention: head_dim differs from the plan's");
  }
  if (plan.workspace_bytes > 0 && workspace == nullptr) {
    return Status::InvalidArgument("paged_attention: the plan needs a workspace");
  }
  if (p.head_dim == 64)
    return LaunchForHeadDim<64>(plan, p, out, q, k_cache, v_cache, workspace, stream);
  return LaunchForHeadDim<128>(plan, p, out, q, k_cache, v_cache, workspace, stream);
}

}  // namespace sluice::kernels::cuda
