// Host side of one paged attention configuration: its shared-memory limit, occupancy and
// launch, behind an AttentionVariant that the planner and PagedAttention reach by
// (phase, head_dim, variant id). The library holds the variants serving plans with
// (paged_attention.cu); a binary that compiles in paged_attention_bench_variants.cu
// (kernel_bench) registers the rest.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>

#include "common.cuh"
#include "paged_attention_config.cuh"
#include "paged_attention_kernel.cuh"
#include "sluice/kernels/cuda/attention.h"

namespace sluice::kernels::cuda {

// Most pieces of a cluster-merged tile (the non-portable cluster size of Hopper).
inline constexpr int kMaxClusterPieces = 16;

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

// cluster > 1: CTAs in clusters of that many (the cluster-merge decode configuration).
// inline_items (kInlineItems configurations, at most kMaxInlineItems items): the host
// copy of the items, passed in the kernel parameters.
template <class C>
Status LaunchConfig(const AttentionKernelArgs& args, int grid, cudaStream_t stream, int cluster = 1,
                    const AttentionWorkItem* inline_items = nullptr) {
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

enum class AttentionPhase { kDecode, kPrefill };

// What the planner and the launch need of one configuration, without its type.
struct AttentionVariant {
  AttentionPhase phase;
  int id;  // PagedAttentionOptions::decode_variant or prefill_variant
  int head_dim;
  int block_m;  // rows per tile
  int block_n;  // positions per K/V tile
  bool cluster_merge;
  Status (*occupancy)(int* ctas_per_sm);
  // Cluster-merge configurations only (else nullptr).
  int (*max_cluster_pieces)();
  Status (*launch)(const AttentionKernelArgs& args, int grid, cudaStream_t stream, int cluster,
                   const AttentionWorkItem* inline_items);
};

template <class C>
constexpr AttentionVariant MakeAttentionVariant(AttentionPhase phase, int id) {
  AttentionVariant v{.phase = phase,
                     .id = id,
                     .head_dim = C::kHeadDim,
                     .block_m = C::kBlockM,
                     .block_n = C::kBlockN,
                     .cluster_merge = C::kClusterMerge,
                     .occupancy = &Occupancy<C>,
                     .max_cluster_pieces = nullptr,
                     .launch = &LaunchConfig<C>};
  if constexpr (C::kClusterMerge) v.max_cluster_pieces = &MaxClusterPieces<C>;
  return v;
}

template <int kHeadDim, int kVariant>
constexpr AttentionVariant DecodeVariant() {
  return MakeAttentionVariant<DecodeConfig<kHeadDim, kVariant>>(AttentionPhase::kDecode, kVariant);
}

template <int kHeadDim, int kVariant>
constexpr AttentionVariant PrefillVariant() {
  return MakeAttentionVariant<PrefillConfig<kHeadDim, kVariant>>(AttentionPhase::kPrefill,
                                                                 kVariant);
}

// The variant of that phase, head_dim and id among the library's and the registered
// ones, or nullptr where this binary has none.
const AttentionVariant* FindAttentionVariant(AttentionPhase phase, int head_dim, int id);

// Adds num_variants variants to FindAttentionVariant's search; returns true. REQUIRES:
// called during static initialisation (before any plan), with an array that lives as
// long as the program.
bool RegisterAttentionVariants(const AttentionVariant* variants, int num_variants);

}  // namespace sluice::kernels::cuda
