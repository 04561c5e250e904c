// The CPU backend's runner: a persistent per-request view (tokens, block table, sampling
// state) updated from the scheduler's deltas, one forward pass per step over the mixed
// batch of prefill chunks and decodes, and seeded per-request sampling.
// Thread safety: none; the engine thread owns it.
#pragma once

#include <memory>

#include "absl/container/flat_hash_map.h"
#include "engine/model/cpu_model.h"
#include "engine/runner/runner.h"
#include "sluice/kernels/sampling.h"

namespace sluice {

class CpuRunner : public Runner {
 public:
  CpuRunner(std::shared_ptr<CpuModel> model, int num_blocks, int block_size);

  absl::StatusOr<StepResult> Execute(const SchedulerOutput& output) override;
  int num_kv_blocks() const override { return cache_.shape().num_blocks; }
  int block_size() const override { return cache_.shape().block_size; }
  int vocab_size() const override { return model_->config().vocab_size; }
  const CpuModel& model() const { return *model_; }

 private:
  struct Seq {
    std::vector<int32_t> token_ids;
    std::vector<int32_t> block_ids;
    int num_computed_tokens = 0;
    int num_output_tokens = 0;
    kernels::SamplingRow sampling;
    SamplingParams params;  // penalties and logprobs
  };
  void ApplyDeltas(const SchedulerOutput& output);
  absl::StatusOr<ForwardBatch> BuildBatch(const SchedulerOutput& output);
  static void ApplyPenalties(const Seq& s, float* logits, int vocab);
  static TokenLogprobs Logprobs(const float* logits, int vocab, int32_t token, int top);

  std::shared_ptr<CpuModel> model_;  // shared only by engines that never run at once
  CpuKvCache cache_;
  absl::flat_hash_map<RequestId, Seq> seqs_;
  std::vector<float> logits_;
};

}  // namespace sluice
