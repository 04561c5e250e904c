// The CUDA runner's class and the helpers its source files share; private to
// engine/runner (cuda_runner.h is the interface). The class's parts live in:
//   cuda_runner.cc          construction, buffers and the KV cache, and the step
//   cuda_runner_weights.cc  the weights on the device: layout, upload or random fill,
//                           and the GEMMs' tuning over them
//   cuda_runner_graphs.cc   CUDA graphs of decode batches: capture and replay
// Thread safety: a CudaRunner is used by one thread at a time (the engine thread after
// loading); CUDA's current device is per thread, so every entry point that touches the
// device selects it first.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/model/config.h"
#include "engine/model/weights.h"
#include "engine/parallel/communicator.h"
#include "engine/runner/cuda_runner.h"
#include "engine/runner/request_table.h"
#include "engine/runner/runner.h"
#include "engine/runner/step_masks.h"
#include "sluice/kernels/attention.h"
#include "sluice/kernels/cuda/attention.h"
#include "sluice/kernels/cuda/gemm.h"
#include "sluice/kernels/dtype.h"
#include "sluice/kernels/kv_cache.h"
#include "sluice/kernels/moe.h"
#include "sluice/kernels/qkv.h"
#include "sluice/kernels/sampling.h"
#include "sluice/kernels/status.h"

namespace sluice::cuda_runner_internal {

using kernels::bf16;
namespace kc = kernels::cuda;

inline constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
// Memory kept free beyond the budget's own accounting (graph pools, cuBLAS, the driver).
inline constexpr size_t kHeadroomBytes = size_t{512} << 20;

inline absl::Status Cuda(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("cuda: ", what, ": ", cudaGetErrorString(err)));
}

inline absl::Status Kernel(const kernels::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return s.code() == kernels::StatusCode::kInvalidArgument ? absl::InvalidArgumentError(s.message())
                                                           : absl::InternalError(s.message());
}

// One device allocation, freed with the owner.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  ~DeviceMemory() {
    if (p_ != nullptr) cudaFree(p_);
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  absl::Status Allocate(size_t bytes, const std::string& what) {
    if (p_ != nullptr) cudaFree(p_);
    p_ = nullptr;
    bytes_ = 0;
    if (bytes == 0) return absl::OkStatus();
    SLUICE_RETURN_IF_ERROR(Cuda(
        cudaMalloc(&p_, bytes),
        absl::StrCat("allocating ", what, " (", absl::StrFormat("%.2f", bytes / kGiB), " GiB)")));
    bytes_ = bytes;
    return absl::OkStatus();
  }
  template <class T>
  T* as(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(p_) + byte_offset);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Page-locked host memory, for the copies that overlap nothing but must not stage.
class PinnedMemory {
 public:
  ~PinnedMemory() {
    if (p_ != nullptr) cudaFreeHost(p_);
  }
  absl::Status Allocate(size_t bytes) {
    return Cuda(cudaMallocHost(&p_, bytes), "allocating pinned host memory");
  }
  template <class T>
  T* as(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(p_) + byte_offset);
  }

 private:
  void* p_ = nullptr;
};

inline size_t Align(size_t x, size_t a = 256) { return (x + a - 1) / a * a; }

struct DeviceLayer {
  bf16 *input_norm = nullptr, *qkv = nullptr, *qkv_bias = nullptr, *o_proj = nullptr,
       *post_norm = nullptr, *gate_up = nullptr, *down_proj = nullptr;
  bf16 *q_norm = nullptr, *k_norm = nullptr;  // QK-norm models only
  bf16* o_proj_bias = nullptr;                // gpt-oss
  const float* sinks = nullptr;               // gpt-oss: [q_heads], in fp32 for attention
  // Mixture-of-experts layers, in place of gate_up and down_proj.
  bf16 *router = nullptr, *router_bias = nullptr;
  kernels::MoeExpertWeights<bf16> experts;
};

// The step inputs, at fixed offsets in one device buffer and its pinned host mirror, so
// that one copy moves them and graphs see the same addresses every step. Block tables
// come last: only the rows in use are copied.
struct InputLayout {
  size_t ids = 0, positions = 0, logits_rows = 0, seq_lens = 0, cu_seqlens = 0, slots = 0,
         sampling = 0, block_tables = 0, total = 0;

  InputLayout(int max_tokens, int max_seqs, int max_blocks_per_seq) {
    size_t at = 0;
    auto take = [&](size_t bytes) {
      const size_t off = at;
      at = Align(at + bytes);
      return off;
    };
    ids = take(sizeof(int32_t) * max_tokens);
    positions = take(sizeof(int32_t) * max_tokens);
    logits_rows = take(sizeof(int32_t) * max_seqs);
    seq_lens = take(sizeof(int32_t) * max_seqs);
    cu_seqlens = take(sizeof(int32_t) * (max_seqs + 1));
    slots = take(sizeof(int64_t) * max_tokens);
    sampling = take(sizeof(kernels::SamplingRow) * max_seqs);
    block_tables = take(sizeof(int32_t) * size_t(max_seqs) * max_blocks_per_seq);
    total = at;
  }
};

class CudaRunner : public Runner {
 public:
  explicit CudaRunner(CudaRunnerOptions options)
      : options_(std::move(options)), table_(options_.block_size) {}
  ~CudaRunner() override;

  absl::Status Init(CudaRunnerInfo* info);

  absl::StatusOr<StepResult> Execute(const SchedulerOutput& output) override;
  int num_kv_blocks() const override { return shape_.num_blocks; }
  int block_size() const override { return shape_.block_size; }
  int vocab_size() const override { return config_.vocab_size; }
  int num_requests() const override { return static_cast<int>(table_.size()); }
  MemoryUsage memory() const override;
  int64_t kv_bytes_per_block() const override {
    return static_cast<int64_t>(kv_.bytes()) / std::max(shape_.num_blocks, 1);
  }

 private:
  absl::Status AllocateWeights();
  absl::Status LoadCheckpoint();
  absl::Status FillRandom();
  // The attention sinks in fp32 (the kernels' type), from the loaded bf16 weights.
  absl::Status ConvertSinks();
  absl::Status AllocateBuffers();
  absl::Status AllocateKvCache(CudaRunnerInfo* info);
  absl::Status CaptureGraphs(CudaRunnerInfo* info);
  absl::Status TuneGemms(CudaRunnerInfo* info);

  // Runs piece k of the forward pass over n token rows (see the header). The last piece
  // computes logits and samples for `rows` rows: all n rows when gather is false (decode
  // graphs), else the rows listed in the inputs' logits_rows.
  absl::Status RunPiece(int k, int n, int rows, bool gather);
  absl::Status QkvPart(int layer, int n);
  // The feed-forward half of a layer over hidden_ (normed), written back to hidden_.
  absl::Status MlpPart(int layer, int n);
  // hidden_[0, n) summed over the tensor-parallel ranks (nothing without a group).
  absl::Status AllReduceHidden(int n);
  absl::Status Attention(int layer);
  absl::Status PrepareAttention(const ForwardBatch& b);
  absl::Status PrepareAttentionPlan(const ForwardBatch& b, size_t window_index);
  // The forward pass of a staged step: graphs when `graph` >= 0 (index into graphs_).
  // `before_sampling` runs on the host once every layer is queued, while the device
  // computes them, and before the piece that samples.
  absl::Status Forward(int n, int rows, bool gather, int graph,
                       const std::function<absl::Status()>& before_sampling);
  // The grammars' masks of the step (masks_ planned), filled and queued for the device.
  absl::Status UploadMasks();
  // Writes the step's inputs into the pinned mirror, padded to `padded` rows (a decode
  // graph's batch size, else the batch's tokens). Returns the bytes to copy: the mirror up
  // to the end of the block-table rows in use.
  size_t StageInputs(const ForwardBatch& b, const std::vector<RequestTable::Seq*>& sampling_seqs,
                     int padded);
  // After the step's launches: the ids sampled for the `rows` sampling entries (drawn again
  // on the host where penalties or logprobs need the logits), appended to their sequences.
  absl::StatusOr<StepResult> CollectSampled(const std::vector<RequestTable::Seq*>& sampling_seqs,
                                            int rows);
  // After CollectSampled (the stream idle): the prompt scores of `prompt_rows`, from the
  // last layer's hidden states of the step, max_seqs rows at a time through the final
  // norm and the LM head, scored on the host.
  absl::StatusOr<std::vector<std::vector<TokenLogprobs>>> ScorePrompts(
      const RequestTable::PromptScoreRows& prompt_rows, size_t num_entries);

  // Where (layer, slot) of the weights lives; layer -1 for the per-model slots.
  static size_t WeightIndex(int layer, WeightSlot slot) {
    return static_cast<size_t>(layer + 1) * kNumWeightSlots + static_cast<size_t>(slot);
  }
  bf16* Weight(int layer, WeightSlot slot) const {
    return weights_.as<bf16>(weight_offsets_[WeightIndex(layer, slot)]);
  }
  // Layer l's K pool, then its V pool, each [num_blocks, block_size, kv_heads, head_dim].
  bf16* KCache(int layer) const { return kv_.as<bf16>(PoolBytes() * (2 * layer)); }
  bf16* VCache(int layer) const { return kv_.as<bf16>(PoolBytes() * (2 * layer + 1)); }
  size_t PoolBytes() const {
    return size_t(shape_.num_blocks) * shape_.BlockElems() * sizeof(bf16);
  }
  // Padded batch size of a decode batch of n rows, or -1 when no graph serves it.
  int GraphIndex(int n) const;

  CudaRunnerOptions options_;
  ModelConfig config_;
  RequestTable table_;
  kernels::KvCacheShape shape_;
  kernels::QkvLayout qkv_layout_;
  cudaStream_t stream_ = nullptr;
  int max_tokens_ = 0;  // rows of the activation buffers
  int max_seqs_ = 0;    // rows of the logits and sampling buffers
  int max_blocks_per_seq_ = 0;

  // Weights.
  DeviceMemory weights_;
  std::vector<size_t> weight_offsets_;  // by WeightIndex
  bf16 *embed_ = nullptr, *final_norm_ = nullptr, *lm_head_ = nullptr;
  std::vector<DeviceLayer> layers_;
  std::unique_ptr<kc::GemmRunner> gemm_qkv_, gemm_o_, gemm_gate_up_, gemm_down_, gemm_lm_head_;
  std::unique_ptr<kc::GemmRunner> gemm_router_;  // mixture-of-experts models: fp32 logits
  std::unique_ptr<Communicator> comm_;           // nccl_one_rank: the layers' all-reduces
  DeviceMemory sinks_;                           // [layers, q_heads] fp32 (attention sinks)

  // Activations and step state.
  DeviceMemory acts_, logits_, gemm_ws_, inputs_, cos_sin_, sampled_;
  DeviceMemory router_logits_, moe_ws_;  // [max_tokens, experts] fp32; kc::Moe's workspace
  bf16 *hidden_ = nullptr, *residual_ = nullptr, *qkv_ = nullptr, *q_ = nullptr, *attn_ = nullptr,
       *gate_up_ = nullptr, *act_ = nullptr, *gathered_hidden_ = nullptr,
       *gathered_residual_ = nullptr;
  PinnedMemory host_inputs_, host_sampled_;
  // Structured outputs: [max_seqs, TokenBitmaskWords(vocab)] token bitmasks.
  DeviceMemory token_masks_;
  PinnedMemory host_token_masks_;
  StepMasks masks_;
  InputLayout layout_{0, 0, 0};
  // One attention plan per distinct sliding window among the layers (gpt-oss alternates
  // windowed and full layers), each with its workspace; layer l uses window_of_layer_[l].
  std::vector<int> windows_, window_of_layer_;
  std::vector<kc::PagedAttentionPlan> plans_;
  std::vector<kernels::PagedAttentionParams> attn_params_;
  std::vector<std::unique_ptr<DeviceMemory>> attn_ws_;

  DeviceMemory kv_;

  // graphs_[g][k]: piece k for padded batch size graph_sizes_[g].
  std::vector<int> graph_sizes_;
  std::vector<std::vector<cudaGraphExec_t>> graphs_;
  int64_t graph_bytes_ = 0;  // device memory the driver took while capturing them
};

}  // namespace sluice::cuda_runner_internal
