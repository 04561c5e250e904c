// Work planning of paged attention on the host: the batch's tiles, their KV splits over a
// persistent grid, and where the plan's lists and partials lie in the workspace. Used by
// paged_attention.cu, which picks the kernel variants and launches them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sluice/kernels/cuda/attention.h"
#include "sluice/kernels/status.h"

namespace sluice::kernels::cuda {

struct AttentionVariant;

// Byte offsets in the workspace of a plan's work lists, merge counters and fp32 partials.
struct WorkspaceLayout {
  size_t decode_items, prefill_items, merge_items, counters, lse, partial_o, total;
};

WorkspaceLayout Layout(const PagedAttentionPlan& plan);

// Fills the plan's work items, merge items and grids for the decode configuration dec and
// the prefill configuration pre. Errors: a sequence whose lengths do not fit its table.
// REQUIRES: plan holds the chosen variants and schedules and no items yet.
Status PlanTiles(const PagedAttentionParams& p, const int32_t* seq_lens,
                 const int32_t* cu_seqlens_q, const PagedAttentionOptions& options,
                 const AttentionVariant& dec, const AttentionVariant& pre,
                 PagedAttentionPlan* plan);

}  // namespace sluice::kernels::cuda
