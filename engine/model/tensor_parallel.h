// Tensor parallelism in the manner of Megatron: each rank holds a slice of every layer and
// the ranks exchange partial sums twice a layer.
//   - QKV is column-parallel (the rank's query heads and their KV heads) and the output
//     projection row-parallel: one all-reduce of the hidden state after it.
//   - gate/up is column-parallel, down row-parallel: one all-reduce after the MLP. A
//     mixture-of-experts layer slices every expert the same way; the router is whole on
//     every rank (all see the same hidden state, so all route alike).
//   - The embedding and the lm_head are vocab-parallel: each rank holds ceil(vocab / N)
//     rows; a token's embedding comes from the rank holding its row (an all-reduce of
//     zeros elsewhere), the logits from an all-gather of each rank's columns.
//   - Biases of the row-parallel matrices (o_proj, the experts' down) are added by rank 0.
// When N exceeds the KV heads, each KV head is replicated on the N / kv_heads ranks whose
// query heads read it, so that every rank holds whole heads. Each rank's KV cache holds
// its KV heads for the same block ids, so the scheduler and the block manager do not know
// about ranks.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/config.h"
#include "engine/model/weights.h"

namespace sluice {

struct TpShard {
  int rank = 0, size = 1;
  int q_head_begin = 0, num_q_heads = 0;          // the rank's query heads
  int kv_head_begin = 0, num_kv_heads = 0;        // the KV heads they read
  int inter_begin = 0, intermediate = 0;          // its columns of the dense MLP
  int moe_inter_begin = 0, moe_intermediate = 0;  // of every expert
  int vocab_begin = 0, vocab_end = 0;             // its rows of the embedding and the lm_head
  int vocab_slice = 0;  // ceil(vocab / size): each rank's logits columns, padded, gathered
};

// Whether `size` ranks can share the model: they must divide the query heads, divide the
// KV heads or be a multiple of them, and divide the MLP's (and experts') intermediate size.
// The error names the numbers.
absl::Status CheckTensorParallel(const ModelConfig& c, int size);

// Rank `rank` of `size`. REQUIRES: CheckTensorParallel(c, size) is OK.
TpShard PlanShard(const ModelConfig& c, int rank, int size);

// The config a rank computes with: its heads and intermediate sizes (the vocab stays whole).
ModelConfig LocalConfig(const ModelConfig& c, const TpShard& s);

// The rank's slices of `w`, which holds the whole model.
ModelWeights ShardWeights(const ModelConfig& c, const ModelWeights& w, const TpShard& s);

// How many times the KV cache's bytes the ranks hold together: 1 while the KV heads are
// split, size / kv_heads when they are replicated.
int KvReplication(const ModelConfig& c, int size);

}  // namespace sluice
