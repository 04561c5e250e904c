#include "engine/model/tensor_parallel.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sluice {
namespace {

bool AnyDense(const ModelConfig& c) {
  for (int l = 0; l < c.num_layers; ++l) {
    if (!c.IsMoeLayer(l)) return true;
  }
  return false;
}

// Rows [begin, begin + count) of a row-major [*, cols] matrix, appended to out.
void AppendRows(std::vector<float>& out, const std::vector<float>& m, int64_t cols, int64_t begin,
                int64_t count) {
  out.insert(out.end(), m.begin() + begin * cols, m.begin() + (begin + count) * cols);
}

// Columns [begin, begin + count) of every row of a row-major [rows, cols] matrix.
std::vector<float> Columns(const std::vector<float>& m, int64_t cols, int64_t begin,
                           int64_t count) {
  const int64_t rows = cols > 0 ? static_cast<int64_t>(m.size()) / cols : 0;
  std::vector<float> out;
  out.reserve(static_cast<size_t>(rows * count));
  for (int64_t r = 0; r < rows; ++r) {
    out.insert(out.end(), m.begin() + r * cols + begin, m.begin() + r * cols + begin + count);
  }
  return out;
}

// A fused [2 * inter per block, cols] matrix (gate rows, then up rows, block after block:
// one block for the dense MLP, one per expert) cut to rows [begin, begin + count) of each
// half of each block.
std::vector<float> GateUpRows(const std::vector<float>& m, int64_t inter, int64_t cols,
                              int64_t begin, int64_t count) {
  if (m.empty()) return {};
  const int64_t blocks = static_cast<int64_t>(m.size()) / (2 * inter * cols);
  std::vector<float> out;
  out.reserve(static_cast<size_t>(blocks * 2 * count * cols));
  for (int64_t b = 0; b < blocks; ++b) {
    AppendRows(out, m, cols, b * 2 * inter + begin, count);
    AppendRows(out, m, cols, b * 2 * inter + inter + begin, count);
  }
  return out;
}

}  // namespace

absl::Status CheckTensorParallel(const ModelConfig& c, int size) {
  const std::string flag = absl::StrCat("--tensor-parallel-size ", size);
  if (size < 1) return absl::InvalidArgumentError(absl::StrCat(flag, ": must be at least 1"));
  if (size > 1 && c.fp8.enabled) {
    return absl::UnimplementedError(
        absl::StrCat(flag, ": FP8 weights are not sharded yet; serve them on one rank"));
  }
  if (c.num_q_heads % size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " does not divide the model's ", c.num_q_heads, " query heads"));
  }
  if (c.num_kv_heads % size != 0 && size % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " neither divides the model's ", c.num_kv_heads,
                     " KV heads nor is a multiple of them (to replicate each on its ranks)"));
  }
  if (AnyDense(c) && c.intermediate_size % size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " does not divide the MLP's intermediate size ", c.intermediate_size));
  }
  if (c.num_experts > 0 && c.moe_intermediate_size % size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " does not divide the experts' intermediate size ", c.moe_intermediate_size));
  }
  return absl::OkStatus();
}

TpShard PlanShard(const ModelConfig& c, int rank, int size) {
  TpShard s;
  s.rank = rank;
  s.size = size;
  s.num_q_heads = c.num_q_heads / size;
  s.q_head_begin = rank * s.num_q_heads;
  if (size <= c.num_kv_heads) {
    s.num_kv_heads = c.num_kv_heads / size;
    s.kv_head_begin = rank * s.num_kv_heads;
  } else {
    // The KV head the rank's query heads share: each group of q_heads / kv_heads query
    // heads reads one KV head, and the rank's heads lie inside one group.
    s.num_kv_heads = 1;
    s.kv_head_begin = s.q_head_begin / (c.num_q_heads / c.num_kv_heads);
  }
  s.intermediate = c.intermediate_size / size;
  s.inter_begin = rank * s.intermediate;
  s.moe_intermediate = c.moe_intermediate_size / size;
  s.moe_inter_begin = rank * s.moe_intermediate;
  s.vocab_slice = (c.vocab_size + size - 1) / size;
  s.vocab_begin = std::min(c.vocab_size, rank * s.vocab_slice);
  s.vocab_end = std::min(c.vocab_size, s.vocab_begin + s.vocab_slice);
  return s;
}

ModelConfig LocalConfig(const ModelConfig& c, const TpShard& s) {
  ModelConfig local = c;
  local.num_q_heads = s.num_q_heads;
  local.num_kv_heads = s.num_kv_heads;
  local.intermediate_size = s.intermediate;
  local.moe_intermediate_size = s.moe_intermediate;
  return local;
}

int KvReplication(const ModelConfig& c, int size) {
  return size > c.num_kv_heads ? size / c.num_kv_heads : 1;
}

ModelWeights ShardWeights(const ModelConfig& c, const ModelWeights& w, const TpShard& s) {
  const int64_t h = c.hidden_size, d = c.head_dim;
  const int64_t q_rows = int64_t{c.num_q_heads} * d, kv_rows = int64_t{c.num_kv_heads} * d;
  const bool first = s.rank == 0;
  ModelWeights out;
  AppendRows(out.embed, w.embed, h, s.vocab_begin, s.vocab_end - s.vocab_begin);
  if (!w.lm_head.empty())
    AppendRows(out.lm_head, w.lm_head, h, s.vocab_begin, s.vocab_end - s.vocab_begin);
  out.final_norm = w.final_norm;
  out.layers.resize(w.layers.size());
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& a = w.layers[l];
    LayerWeights& b = out.layers[l];
    b.input_norm = a.input_norm;
    b.post_norm = a.post_norm;
    b.q_norm = a.q_norm;
    b.k_norm = a.k_norm;
    b.quant = a.quant;  // (FP8 is refused above one rank: CheckTensorParallel)
    // QKV: the rank's query rows, then its KV heads' key rows, then their value rows.
    auto qkv_rows = [&](const std::vector<float>& m, int64_t cols) {
      std::vector<float> r;
      if (m.empty()) return r;
      AppendRows(r, m, cols, s.q_head_begin * d, s.num_q_heads * d);
      AppendRows(r, m, cols, q_rows + s.kv_head_begin * d, s.num_kv_heads * d);
      AppendRows(r, m, cols, q_rows + kv_rows + s.kv_head_begin * d, s.num_kv_heads * d);
      return r;
    };
    b.qkv = qkv_rows(a.qkv, h);
    b.qkv_bias = qkv_rows(a.qkv_bias, 1);
    b.o_proj = Columns(a.o_proj, q_rows, s.q_head_begin * d, s.num_q_heads * d);
    if (first) b.o_bias = a.o_bias;
    if (!a.sinks.empty()) {
      b.sinks.assign(a.sinks.begin() + s.q_head_begin,
                     a.sinks.begin() + s.q_head_begin + s.num_q_heads);
    }
    b.gate_up = GateUpRows(a.gate_up, c.intermediate_size, h, s.inter_begin, s.intermediate);
    if (!a.down_proj.empty()) {
      b.down_proj = Columns(a.down_proj, c.intermediate_size, s.inter_begin, s.intermediate);
    }
    b.router = a.router;
    b.router_bias = a.router_bias;
    const int64_t mi = c.moe_intermediate_size;
    b.expert_gate_up = GateUpRows(a.expert_gate_up, mi, h, s.moe_inter_begin, s.moe_intermediate);
    b.expert_gate_up_bias =
        GateUpRows(a.expert_gate_up_bias, mi, 1, s.moe_inter_begin, s.moe_intermediate);
    if (!a.expert_down.empty()) {
      b.expert_down = Columns(a.expert_down, mi, s.moe_inter_begin, s.moe_intermediate);
    }
    if (first) b.expert_down_bias = a.expert_down_bias;
  }
  return out;
}

}  // namespace sluice
