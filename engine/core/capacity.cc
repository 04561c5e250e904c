#include "engine/capacity.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/model/tensor_parallel.h"
#include "engine/model/weights.h"

namespace sluice {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string Canonical(const std::string& name) {
  std::string out;
  for (char ch : name) {
    if (ch != ' ' && ch != '-' && ch != '_') {
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
    }
  }
  return out;
}

}  // namespace

const std::vector<DeviceSpec>& KnownDevices() {
  // Memory: what the driver reports (nvidia-smi's total), not the marketing figure.
  static const std::vector<DeviceSpec> devices = {
      {"H100 SXM", 79.6, 3350, 989, "NVIDIA H100 Tensor Core GPU datasheet (SXM5, HBM3)"},
      {"H200", 140.4, 4800, 989, "NVIDIA H200 Tensor Core GPU datasheet (SXM, HBM3e)"},
      {"A100 80GB", 79.3, 2039, 312, "NVIDIA A100 Tensor Core GPU datasheet (SXM, HBM2e)"},
      {"L40S", 44.4, 864, 362, "NVIDIA L40S datasheet (GDDR6)"},
  };
  return devices;
}

const DeviceSpec* FindDevice(const std::string& name) {
  const std::string want = Canonical(name);
  for (const DeviceSpec& d : KnownDevices()) {
    const std::string have = Canonical(d.name);
    // "h100" names the SXM part, the one the table holds.
    if (have == want || (want == "h100" && have == "h100sxm") ||
        (want == "a100" && have == "a10080gb")) {
      return &d;
    }
  }
  return nullptr;
}

int DtypeBytes(const std::string& dtype) {
  const std::string d = Canonical(dtype);
  if (d == "float32" || d == "fp32") return 4;
  if (d == "bfloat16" || d == "bf16" || d == "float16" || d == "fp16" || d == "half") return 2;
  if (d == "fp8" || d == "float8") return 1;
  return 0;
}

int64_t WeightBytes(const ModelConfig& c, int bytes_per_elem) {
  int64_t elems = 0;
  ForEachWeight(c, [&](int, WeightSlot slot) { elems += SlotElements(c, slot); });
  return elems * bytes_per_elem;
}

int64_t KvBytesPerToken(const ModelConfig& c, int bytes_per_elem) {
  return int64_t{2} * c.num_layers * c.num_kv_heads * c.head_dim * bytes_per_elem;
}

int64_t KvBytesPerBlock(const ModelConfig& c, int block_size, int bytes_per_elem) {
  return KvBytesPerToken(c, bytes_per_elem) * block_size;
}

int CpuKvBlocks(const ModelConfig& c, double kv_cache_gib, int block_size,
                int tensor_parallel_size) {
  // The ranks' caches together: the whole KV once, or more where heads are replicated.
  const double bytes_per_block = static_cast<double>(KvBytesPerBlock(c, block_size, 4)) *
                                 KvReplication(c, tensor_parallel_size);
  return std::max(1, static_cast<int>(kv_cache_gib * kGiB / bytes_per_block));
}

int64_t CpuActivationBytes(const ModelConfig& c, int max_num_batched_tokens, int max_num_seqs) {
  const int64_t n = std::max(max_num_batched_tokens, 0);
  const int64_t rows = std::max(max_num_seqs, 0);
  const int64_t q = int64_t{c.num_q_heads} * c.head_dim, kv = int64_t{c.num_kv_heads} * c.head_dim;
  // CpuModel::ReserveScratch: hidden, residual, qkv, q, k, v, attn, gate_up, act, picked,
  // and with experts the router's logits and what cpu::MoeExperts takes while it runs: the
  // top-k ids and weights, the gathered rows and the weighted sum.
  const int64_t mlp = std::max(c.intermediate_size, c.moe_intermediate_size);
  int64_t scratch =
      n * (2 * c.hidden_size + (q + 2 * kv) + q + 2 * kv + q + 3 * mlp) + rows * c.hidden_size;
  if (c.num_experts > 0) {
    scratch += n * (c.num_experts + 2 * int64_t{c.num_experts_per_tok} + 2 * c.hidden_size);
  }
  const int64_t logits = rows * c.vocab_size;  // CpuRunner's logits buffer
  return (scratch + logits) * 4;
}

Roofline DecodeRoofline(const ModelConfig& c, int bytes_per_elem) {
  Roofline r;
  double all_experts = 0;  // every expert of every layer
  ForEachWeight(c, [&](int, WeightSlot slot) {
    if (slot == WeightSlot::kEmbed && !c.tie_word_embeddings) return;
    const double bytes = static_cast<double>(SlotElements(c, slot)) * bytes_per_elem;
    (IsExpertSlot(slot) ? all_experts : r.weight_bytes) += bytes;
  });
  for (int l = 0; l < c.num_layers; ++l) r.moe_layers += c.IsMoeLayer(l) ? 1 : 0;
  if (r.moe_layers > 0) {
    r.num_experts = c.num_experts;
    r.top_k = c.num_experts_per_tok;
    r.expert_bytes = all_experts / (static_cast<double>(r.moe_layers) * c.num_experts);
  }
  r.kv_bytes_per_token = static_cast<double>(KvBytesPerToken(c, bytes_per_elem));
  return r;
}

double Roofline::ActiveExperts(int batch) const {
  if (num_experts <= 0 || batch <= 0) return 0;
  const double miss = 1.0 - static_cast<double>(top_k) / num_experts;
  return num_experts * (1.0 - std::pow(miss, batch));
}

double Roofline::StepBytes(int batch, double context_tokens) const {
  return weight_bytes + moe_layers * expert_bytes * ActiveExperts(batch) +
         kv_bytes_per_token * context_tokens;
}

double DecodeFloorSeconds(const Roofline& r, int batch, int context, double bandwidth_gbps) {
  if (bandwidth_gbps <= 0) return 0;
  return r.StepBytes(batch, static_cast<double>(batch) * context) / (bandwidth_gbps * 1e9);
}

double PrefillFlopsPerToken(const ModelConfig& c, int context) {
  double matmul = 0;
  ForEachWeight(c, [&](int, WeightSlot slot) {
    if (slot == WeightSlot::kEmbed && !c.tie_word_embeddings) return;  // a gather
    if (slot == WeightSlot::kInputNorm || slot == WeightSlot::kPostNorm ||
        slot == WeightSlot::kFinalNorm || slot == WeightSlot::kQkvBias ||
        slot == WeightSlot::kExpertGateUpBias || slot == WeightSlot::kExpertDownBias) {
      return;
    }
    // A token goes through top_k of a layer's experts.
    const double share =
        IsExpertSlot(slot) ? static_cast<double>(c.num_experts_per_tok) / c.num_experts : 1.0;
    matmul += static_cast<double>(SlotElements(c, slot)) * share;
  });
  // QK^T and PV: 2 FLOPs per multiply-add, each q head over `context` positions.
  const double attention = 4.0 * c.num_layers * c.num_q_heads * c.head_dim * context;
  return 2.0 * matmul + attention;
}

double CudaActivationBytes(const ModelConfig& c, int max_num_batched_tokens, int max_num_seqs,
                           int tensor_parallel_size) {
  const double t = max_num_batched_tokens, s = max_num_seqs, tp = tensor_parallel_size;
  const double q = double(c.num_q_heads) * c.head_dim / tp;
  const double qkv = (double(c.num_q_heads) + 2.0 * c.num_kv_heads) * c.head_dim / tp;
  const double inter = c.intermediate_size / tp;
  // CudaRunner::AllocateBuffers: bf16 activations, fp32 logits, workspaces.
  const double acts =
      2.0 * (t * (2.0 * c.hidden_size + qkv + 2.0 * q + 3.0 * inter) + 2.0 * s * c.hidden_size);
  const double logits = 4.0 * s * c.vocab_size;
  const double workspaces = 32.0 * (1 << 20) + 16.0 * (1 << 20);  // GEMM, attention
  return acts + logits + workspaces;
}

absl::StatusOr<CapacityPlan> PlanCapacity(const ModelConfig& c, const PlanOptions& o) {
  if (o.backend != "cuda" && o.backend != "cpu") {
    return absl::InvalidArgumentError(absl::StrCat("--backend ", o.backend, ": cpu or cuda"));
  }
  if (o.block_size < 1) return absl::InvalidArgumentError("--block-size must be >= 1");
  SLUICE_RETURN_IF_ERROR(CheckTensorParallel(c, o.tensor_parallel_size));
  if (o.input_len < 1 || o.output_len < 1) {
    return absl::InvalidArgumentError("--input-len and --output-len must be >= 1");
  }
  const bool cpu = o.backend == "cpu";
  const int elem = cpu ? 4 : o.bytes_per_elem;
  const int tp = o.tensor_parallel_size;
  // A rank's share: its heads (KV heads replicated past their count) and columns. The CPU
  // backend's ranks share one host, so its figures are the ranks' sum.
  const ModelConfig local = LocalConfig(c, PlanShard(c, 0, tp));
  CapacityPlan p;
  p.weight_bytes = static_cast<double>(WeightBytes(c, elem)) / (cpu ? 1 : tp);
  p.kv_bytes_per_block = KvBytesPerBlock(local, o.block_size, elem) * (cpu ? tp : 1);
  if (cpu) {
    p.activation_bytes =
        static_cast<double>(CpuActivationBytes(c, o.max_num_batched_tokens, o.max_num_seqs));
    p.num_kv_blocks =
        o.num_kv_blocks > 0 ? o.num_kv_blocks : CpuKvBlocks(c, o.kv_cache_gib, o.block_size, tp);
    p.memory_bytes = o.kv_cache_gib * kGiB;
  } else {
    if (o.device.memory_gib <= 0) {
      return absl::InvalidArgumentError("a device is needed: --device NAME or --gpu-memory-gib");
    }
    p.memory_bytes = o.gpu_memory_utilization * o.device.memory_gib * kGiB;
    p.activation_bytes = CudaActivationBytes(c, o.max_num_batched_tokens, o.max_num_seqs, tp);
    p.reserved_bytes = kCudaContextBytes + kCudaHeadroomBytes;
    const double budget = p.memory_bytes - p.weight_bytes - p.activation_bytes - p.reserved_bytes;
    if (budget < static_cast<double>(p.kv_bytes_per_block)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the weights (", p.weight_bytes / kGiB,
                       " GiB per GPU) and buffers leave no room for "
                       "the KV cache in ",
                       p.memory_bytes / kGiB, " GiB (", o.device.memory_gib,
                       " GiB x --gpu-memory-utilization ", o.gpu_memory_utilization, ")"));
    }
    p.num_kv_blocks = o.num_kv_blocks > 0
                          ? o.num_kv_blocks
                          : static_cast<int>(budget / static_cast<double>(p.kv_bytes_per_block));
  }
  p.kv_bytes = static_cast<double>(p.kv_bytes_per_block) * p.num_kv_blocks;
  p.left_bytes =
      cpu ? p.memory_bytes - p.kv_bytes
          : p.memory_bytes - p.weight_bytes - p.activation_bytes - p.reserved_bytes - p.kv_bytes;
  p.kv_tokens = int64_t{p.num_kv_blocks} * o.block_size;
  const int64_t blocks_per_max = (c.max_position_embeddings + o.block_size - 1) / o.block_size;
  p.max_len_sequences = static_cast<int>(p.num_kv_blocks / std::max<int64_t>(blocks_per_max, 1));
  const int64_t seq_len = int64_t{o.input_len} + o.output_len;
  const int64_t blocks_per_seq = (seq_len + o.block_size - 1) / o.block_size;
  p.workload_sequences =
      static_cast<int>(std::min<int64_t>(o.max_num_seqs, p.num_kv_blocks / blocks_per_seq));

  if (!cpu) {
    Roofline r = DecodeRoofline(c, elem);
    r.weight_bytes /= tp;
    r.expert_bytes /= tp;
    r.kv_bytes_per_token = static_cast<double>(KvBytesPerToken(local, elem));
    const int context = o.input_len + o.output_len / 2;
    p.decode_floor_batch1_s = DecodeFloorSeconds(r, 1, context, o.device.bandwidth_gbps);
    const int batch = std::max(p.workload_sequences, 1);
    p.decode_floor_max_batch_s = DecodeFloorSeconds(r, batch, context, o.device.bandwidth_gbps);
    if (o.device.bf16_tflops > 0) {
      // 1,024 tokens from an empty cache: token i attends to i + 1 positions (mean 512.5).
      const double flops = 1024.0 * PrefillFlopsPerToken(c, 512) / tp;
      p.prefill_s_per_1k = flops / (o.device.bf16_tflops * 1e12);
    }
    if (p.decode_floor_max_batch_s > 0) {
      p.max_output_tokens_per_s = batch / p.decode_floor_max_batch_s;
    }
    if (o.cost_per_hour > 0 && p.max_output_tokens_per_s > 0) {
      // The replica holds tp GPUs; its price is per replica.
      p.cost_per_million_output_tokens = o.cost_per_hour / 3600.0 / p.max_output_tokens_per_s * 1e6;
    }
    if (o.cost_per_hour > 0 && p.prefill_s_per_1k > 0) {
      p.cost_per_million_input_tokens = o.cost_per_hour / 3600.0 * p.prefill_s_per_1k * 1e6 / 1024;
    }
  }
  return p;
}

}  // namespace sluice
