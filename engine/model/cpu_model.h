// The Llama-family forward pass on the CPU backend (dense, and mixture-of-experts layers):
// fp32 math on weights converted from the checkpoint, paged KV cache, ops from kernels/
// (the same references the CUDA kernels are tested against). A model may be one rank of
// a tensor-parallel group (tensor_parallel.h): it then holds its slices of the weights,
// computes over its heads and columns, and meets the other ranks through a Communicator
// twice a layer, once for the embedding and once for the logits.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/config.h"
#include "engine/model/tensor_parallel.h"
#include "engine/model/weights.h"
#include "engine/parallel/communicator.h"
#include "sluice/kernels/kv_cache.h"
#include "sluice/kernels/thread_pool.h"

namespace sluice {

// One step's flattened batch, as the runner builds it from the scheduler's output.
// Sequence s owns query tokens [cu_seqlens_q[s], cu_seqlens_q[s + 1]).
struct ForwardBatch {
  std::vector<int32_t> input_ids;     // [num_tokens]
  std::vector<int32_t> positions;     // [num_tokens]
  std::vector<int64_t> slot_mapping;  // [num_tokens] KV slot of each token
  std::vector<int32_t> cu_seqlens_q;  // [num_seqs + 1]
  std::vector<int32_t> seq_lens;      // [num_seqs] context length after this step
  std::vector<int32_t> block_tables;  // [num_seqs, max_blocks_per_seq]
  int max_blocks_per_seq = 0;
  std::vector<int32_t> logits_rows;  // token rows whose logits are wanted

  int num_tokens() const { return static_cast<int>(input_ids.size()); }
  int num_seqs() const { return static_cast<int>(seq_lens.size()); }
};

// Per-layer K and V pools in fp32.
class CpuKvCache {
 public:
  CpuKvCache(const ModelConfig& config, int num_blocks, int block_size);

  const kernels::KvCacheShape& shape() const { return shape_; }
  int64_t bytes() const;  // K and V of every layer
  float* k(int layer) { return k_[layer].data(); }
  float* v(int layer) { return v_[layer].data(); }

 private:
  kernels::KvCacheShape shape_;
  std::vector<std::vector<float>> k_, v_;
};

class CpuModel {
 public:
  // Loads DIR's config and checkpoint. `progress` sees each layer as it loads.
  static absl::StatusOr<std::unique_ptr<CpuModel>> Load(const std::string& dir,
                                                        const LoadProgress& progress = nullptr);
  // DIR's config with the random weights of `seed` (see RandomWeights); no checkpoint read.
  static absl::StatusOr<std::unique_ptr<CpuModel>> LoadRandom(const std::string& dir,
                                                              uint64_t seed);
  // As Load and LoadRandom, with DIR's config as given (LoadModelConfig with the serving
  // flags, such as --quantization).
  static absl::StatusOr<std::unique_ptr<CpuModel>> Load(const std::string& dir, ModelConfig config,
                                                        const LoadProgress& progress = nullptr);
  static absl::StatusOr<std::unique_ptr<CpuModel>> LoadRandom(ModelConfig config, uint64_t seed);

  // Rank `shard.rank` of a tensor-parallel group over the whole model's `weights`,
  // meeting the others through `comm` (not owned; it outlives the model).
  static std::unique_ptr<CpuModel> Rank(const ModelConfig& config, const ModelWeights& weights,
                                        const TpShard& shard, Communicator* comm);

  const ModelConfig& config() const { return config_; }  // the whole model's
  // What this rank computes with: its heads and intermediate sizes (config() when alone).
  const ModelConfig& local_config() const { return local_; }
  const TpShard& shard() const { return shard_; }

  // Runs the batch, writing its K/V into `cache` and the logits of batch.logits_rows
  // into `logits` ([logits_rows.size(), vocab]; every rank of a group gets them all).
  // REQUIRES: every slot and block the batch names lies inside `cache` (built from
  // local_config()); the other ranks of a group run the same batch at the same time.
  absl::Status Forward(const ForwardBatch& batch, CpuKvCache& cache, std::vector<float>& logits);

  // Sizes the per-step scratch for batches of up to `max_tokens` tokens and `max_rows`
  // logits rows and touches every page of it, so that the process reaches its resident
  // footprint at load rather than at the first batch larger than any before. A larger
  // batch still works: Forward grows the scratch as needed.
  void ReserveScratch(int max_tokens, int max_rows);

  // The threads Forward splits its GEMMs and attention over (nullptr: the caller's
  // alone). The output depends on how many only to float32 rounding.
  void SetThreadPool(std::shared_ptr<kernels::ThreadPool> pool) { pool_ = std::move(pool); }

  // Bytes of the loaded tensors, and of the per-step scratch as reserved (capacity).
  int64_t weight_bytes() const;
  int64_t scratch_bytes() const;

 private:
  CpuModel(ModelConfig config, ModelWeights weights, const TpShard& shard = {},
           Communicator* comm = nullptr);
  // data[0, count) summed over the group's ranks (nothing when alone).
  absl::Status AllReduce(std::vector<float>& data, size_t count);
  // The vocab-parallel embedding (the rank's rows, zeros for the others' ids).
  absl::Status Embed(const ForwardBatch& batch);
  absl::Status LmHead(int rows, std::vector<float>& logits);
  absl::Status ValidateBatch(const ForwardBatch& batch, const CpuKvCache& cache) const;
  absl::Status Attention(int layer, const ForwardBatch& batch, CpuKvCache& cache);
  absl::Status Mlp(int layer, int num_tokens);
  // The input `x` ([rows, cols]) of a linear layer as its FP8 GEMM reads it: x itself
  // when the layer does not quantize its input, else its E4M3 values in quantized_.
  absl::StatusOr<const float*> LinearInput(const InputQuant& q, const float* x, int rows, int cols);
  // A mixture-of-experts layer's MLP: hidden_ := the weighted sum of its tokens' experts.
  absl::Status Moe(int layer, int num_tokens);

  ModelConfig config_;  // the whole model
  ModelConfig local_;   // this rank's part
  TpShard shard_;
  Communicator* comm_ = nullptr;  // null: alone
  ModelWeights weights_;
  std::vector<float> rope_cos_sin_;  // [max_positions, rotary_dim]
  // Scratch reused across steps.
  std::vector<float> hidden_, residual_, qkv_, q_, k_, v_, attn_, gate_up_, act_, picked_;
  std::vector<float> router_logits_;
  std::vector<float> quantized_;  // an FP8 linear layer's input, quantized and back
  std::vector<float> local_logits_, gathered_logits_;  // vocab-parallel lm_head
  std::shared_ptr<kernels::ThreadPool> pool_;
};

}  // namespace sluice
