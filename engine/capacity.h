// What a model needs of a machine, from its config alone: the bytes of its weights, of a
// KV block and of the step buffers; the KV blocks a memory budget holds; the bytes a
// decode step must read and the FLOPs of prefill. The loader sizes the CPU backend's KV
// cache with these, `sluice plan` prints them, throughput_bench measures against them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/config.h"

namespace sluice {

// An accelerator's figures from its vendor's datasheet (peak, dense).
struct DeviceSpec {
  std::string name;
  double memory_gib = 0;
  double bandwidth_gbps = 0;  // GB/s (1e9 bytes)
  double bf16_tflops = 0;     // dense, without sparsity
  std::string source;
};

// H100 SXM, H200, A100 80GB, L40S. Names match case-insensitively, spaces and dashes ignored.
const std::vector<DeviceSpec>& KnownDevices();
const DeviceSpec* FindDevice(const std::string& name);

// Bytes per element of a dtype name: float32 4; bfloat16, float16 2; fp8 1. 0 when unknown.
int DtypeBytes(const std::string& dtype);

int64_t WeightBytes(const ModelConfig& c, int bytes_per_elem);  // every tensor
int64_t KvBytesPerToken(const ModelConfig& c, int bytes_per_elem);
int64_t KvBytesPerBlock(const ModelConfig& c, int block_size, int bytes_per_elem);

// The CPU backend (fp32): KV blocks in `kv_cache_gib` (all tensor-parallel ranks' caches
// together), and the step buffers sized for the limits (CpuModel::ReserveScratch and the
// runner's logits).
int CpuKvBlocks(const ModelConfig& c, double kv_cache_gib, int block_size,
                int tensor_parallel_size = 1);
int64_t CpuActivationBytes(const ModelConfig& c, int max_num_batched_tokens, int max_num_seqs);

// What one decode step must read: every weight but the embedding table (a gather reads
// one row per token; tied, the table is read whole as the lm_head), and each sequence's
// KV for its context. A mixture-of-experts layer reads only the experts its tokens are
// routed to: counted as the number expected when each token picks its top-k uniformly,
// E * (1 - (1 - k / E)^batch) per layer (k at batch 1; all E as the batch grows).
struct Roofline {
  double weight_bytes = 0;  // read every step: all but the embedding table and the experts
  double kv_bytes_per_token = 0;
  double expert_bytes = 0;  // one expert of one layer: gate/up, down and their biases
  int moe_layers = 0, num_experts = 0, top_k = 0;

  double ActiveExperts(int batch) const;
  // Bytes of a decode step over `batch` sequences holding `context_tokens` in all.
  double StepBytes(int batch, double context_tokens) const;
};
Roofline DecodeRoofline(const ModelConfig& c, int bytes_per_elem);
// StepBytes(batch, batch x context) / bandwidth.
double DecodeFloorSeconds(const Roofline& r, int batch, int context, double bandwidth_gbps);

// Matmul FLOPs of one prompt token at `context` tokens of attention: 2 per weight of the
// matmuls (lm_head included; of the experts, the top-k a token goes through) plus QK^T
// and PV over the context.
double PrefillFlopsPerToken(const ModelConfig& c, int context);

struct PlanOptions {
  std::string backend = "cuda";  // cuda or cpu
  DeviceSpec device;             // cuda
  double gpu_memory_utilization = 0.9;
  int tensor_parallel_size = 1;
  int bytes_per_elem = 2;
  double kv_cache_gib = 1.0;  // cpu
  int num_kv_blocks = 0;      // 0: from the budget
  int block_size = 16;
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  int input_len = 1024;
  int output_len = 128;
  double cost_per_hour = 0;  // USD; 0: no cost figures
};

struct CapacityPlan {
  // Per device (per GPU under tensor parallelism).
  double memory_bytes = 0;  // the budget: memory x utilization (cuda), or KV GiB (cpu)
  double weight_bytes = 0;
  double activation_bytes = 0;
  double reserved_bytes = 0;  // cuda: driver context, graph pools, headroom
  int64_t kv_bytes_per_block = 0;
  int num_kv_blocks = 0;
  double kv_bytes = 0;
  double left_bytes = 0;  // budget - weights - activations - reserved - KV
  int64_t kv_tokens = 0;
  int max_len_sequences = 0;            // at the model's context window
  int workload_sequences = 0;           // of input_len + output_len that fit, up to max_num_seqs
  double decode_floor_batch1_s = 0;     // at input_len + output_len / 2 context
  double decode_floor_max_batch_s = 0;  // at workload_sequences
  double prefill_s_per_1k = 0;          // 1,024 prompt tokens from an empty cache
  double max_output_tokens_per_s = 0;   // workload_sequences / its decode floor
  double cost_per_million_output_tokens = 0;
  double cost_per_million_input_tokens = 0;
};

// The plan for `config` under `options`: InvalidArgument naming the option at fault, or
// ResourceExhausted when the weights do not fit.
absl::StatusOr<CapacityPlan> PlanCapacity(const ModelConfig& config, const PlanOptions& options);

// The CUDA runner's reservations beside weights, activations and KV: the driver's
// context, graph pools and cuBLAS (an estimate), and the headroom it keeps free.
inline constexpr double kCudaContextBytes = 512.0 * (1 << 20);
inline constexpr double kCudaHeadroomBytes = 512.0 * (1 << 20);
// The CUDA runner's step buffers (activations, logits, workspaces, inputs), an estimate
// of CudaRunner::AllocateBuffers.
double CudaActivationBytes(const ModelConfig& c, int max_num_batched_tokens, int max_num_seqs,
                           int tensor_parallel_size);

}  // namespace sluice
