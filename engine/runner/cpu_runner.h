// The CPU backend's runner: the request table updated from the scheduler's deltas, one
// forward pass per step over the mixed batch of prefill chunks and decodes (on every
// tensor-parallel rank of the model group at once), and seeded per-request sampling.
// Thread safety: none; the engine thread owns it.
#pragma once

#include <memory>

#include "engine/model/cpu_model.h"
#include "engine/model/cpu_model_group.h"
#include "engine/runner/request_table.h"
#include "engine/runner/runner.h"
#include "engine/runner/step_masks.h"
#include "engine/spec/proposer.h"

namespace sluice {

class CpuRunner : public Runner {
 public:
  CpuRunner(std::shared_ptr<CpuModel> model, int num_blocks, int block_size);
  // Over a tensor-parallel group (its caches give the blocks).
  explicit CpuRunner(std::unique_ptr<CpuModelGroup> group);

  // Sizes the model's per-step scratch and the logits buffer for the scheduler's limits
  // (see CpuModel::ReserveScratch), with up to `max_drafts` drafts per sequence: memory
  // use is flat from load on.
  void ReserveStepBuffers(int max_num_batched_tokens, int max_num_seqs, int max_drafts = 0);

  // Speculative decoding: drafts come from `proposer` when the scheduler asks for them
  // (ScheduledTokens::propose) and are verified by SampleEntry.
  void SetProposer(std::unique_ptr<Proposer> proposer) { proposer_ = std::move(proposer); }

  absl::StatusOr<StepResult> Execute(const SchedulerOutput& output) override;
  int num_kv_blocks() const override { return group_->cache_shape().num_blocks; }
  int block_size() const override { return group_->cache_shape().block_size; }
  int vocab_size() const override { return group_->config().vocab_size; }
  int num_requests() const override { return static_cast<int>(table_.size()); }
  MemoryUsage memory() const override;
  int64_t kv_bytes_per_block() const override;
  const CpuModel& model() const { return group_->rank(0); }
  CpuModelGroup& group() { return *group_; }

 private:
  std::unique_ptr<CpuModelGroup> group_;
  RequestTable table_;
  StepMasks masks_;  // after table_: its worker stops before the rows it reads go
  std::vector<float> logits_;
  std::unique_ptr<Proposer> proposer_;
};

}  // namespace sluice
