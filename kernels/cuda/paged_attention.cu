// Host side of paged attention: the choice of kernel variants, the plan (tiles and splits
// in paged_attention_plan.cu), its upload, and the two launches (decode and prefill
// configurations). The library compiles only the variants that PlanPagedAttention picks
// by default; the others, which bench/kernels compares, are in
// paged_attention_bench_variants.cu and exist where a binary compiles that file in.
#include <string>
#include <vector>

#include "common.cuh"
#include "paged_attention_launch.cuh"
#include "paged_attention_plan.h"
#include "sluice/kernels/cuda/attention.h"

namespace sluice::kernels::cuda {
namespace {

// Defaults: the fastest variant bench/kernels measured (see kernels/cuda/NOTES.md), the
// Hopper one where the binary and device have sm_90a.
constexpr int kDefaultPrefillVariant = 2;
constexpr int kDefaultHopperPrefillVariant = 5;
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

// What default options plan with at either head_dim (prefill at head_dim 64 is always
// v0).
constexpr AttentionVariant kServingVariants[] = {
    DecodeVariant<64, kDefaultDecodeVariant>(),
    DecodeVariant<128, kDefaultDecodeVariant>(),
    PrefillVariant<64, 0>(),
    PrefillVariant<128, kDefaultPrefillVariant>(),
    PrefillVariant<128, kDefaultHopperPrefillVariant>(),
};

struct VariantTable {
  const AttentionVariant* variants;
  int num_variants;
};

// Tables added by RegisterAttentionVariants (during static initialisation only).
std::vector<VariantTable>& RegisteredTables() {
  static auto* tables = new std::vector<VariantTable>();
  return *tables;
}

// Whether this binary carries sm_90a machine code for the wgmma kernels (a build for
// other targets only has traps there).
bool WgmmaBuilt() {
  static const bool built = [] {
    cudaFuncAttributes attr;
    return cudaFuncGetAttributes(
               &attr, PagedAttentionKernel<PrefillConfig<128, kDefaultHopperPrefillVariant>>) ==
               cudaSuccess &&
           attr.binaryVersion == 90;
  }();
  return built;
}

// Launches one of the plan's two work lists (nothing for an empty one).
Status LaunchItems(AttentionPhase phase, int variant, const PagedAttentionPlan& plan,
                   const AttentionKernelArgs& args, int grid, cudaStream_t stream, int cluster,
                   const AttentionWorkItem* inline_items) {
  if (args.num_items == 0) return Status::Ok();
  const AttentionVariant* v = FindAttentionVariant(phase, plan.head_dim, variant);
  if (v == nullptr) {
    return Status::InvalidArgument("paged_attention: the plan's variant " +
                                   std::to_string(variant) + " is not in this binary");
  }
  return v->launch(args, grid, stream, cluster, inline_items);
}

}  // namespace

const AttentionVariant* FindAttentionVariant(AttentionPhase phase, int head_dim, int id) {
  auto is = [&](const AttentionVariant& v) {
    return v.phase == phase && v.head_dim == head_dim && v.id == id;
  };
  for (const AttentionVariant& v : kServingVariants) {
    if (is(v)) return &v;
  }
  for (const VariantTable& t : RegisteredTables()) {
    for (int i = 0; i < t.num_variants; ++i) {
      if (is(t.variants[i])) return &t.variants[i];
    }
  }
  return nullptr;
}

bool RegisterAttentionVariants(const AttentionVariant* variants, int num_variants) {
  RegisteredTables().push_back({variants, num_variants});
  return true;
}

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
  if (p.head_dim != 64 && p.head_dim != 128) {
    return Status::Unsupported("paged_attention: head_dim " + std::to_string(p.head_dim) +
                               " (64 and 128 are supported)");
  }
  const AttentionVariant* dec =
      FindAttentionVariant(AttentionPhase::kDecode, p.head_dim, plan->decode_variant);
  const AttentionVariant* pre =
      FindAttentionVariant(AttentionPhase::kPrefill, p.head_dim, plan->prefill_variant);
  if (dec == nullptr || pre == nullptr) {
    return Status::Unsupported(
        "paged_attention: decode variant " + std::to_string(plan->decode_variant) +
        " or prefill variant " + std::to_string(plan->prefill_variant) + " at head_dim " +
        std::to_string(p.head_dim) +
        " is not in this binary (the library has the default ones; kernel_bench compiles in "
        "paged_attention_bench_variants.cu for the rest)");
  }
  if (Status s = PlanTiles(p, seq_lens_host, cu_seqlens_q_host, options, *dec, *pre, plan);
      !s.ok()) {
    return s;
  }
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
  args.window = p.sliding_window;
  args.sinks = p.sinks;
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
  if (Status s =
          LaunchItems(AttentionPhase::kDecode, plan.decode_variant, plan, args, plan.decode_grid,
                      stream, plan.decode_cluster, plan.decode_items.data());
      !s.ok()) {
    return s;
  }
  args.items = reinterpret_cast<const AttentionWorkItem*>(ws + w.prefill_items);
  args.num_items = static_cast<int>(plan.prefill_items.size());
  return LaunchItems(AttentionPhase::kPrefill, plan.prefill_variant, plan, args, plan.prefill_grid,
                     stream, /*cluster=*/1, /*inline_items=*/nullptr);
}

}  // namespace sluice::kernels::cuda
