// The runner turns a SchedulerOutput into a device batch, runs the model and samples.
// It never sees a hash; block ids are its only vocabulary with the scheduler.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/sched/scheduler.h"

namespace sluice {

// One step's result: one sampled id per scheduled entry whose `samples` is set, in batch
// order, and beside each its logprobs (empty `top` and 0 when not requested).
struct StepResult {
  std::vector<int32_t> sampled;
  std::vector<TokenLogprobs> logprobs;
};

class Runner {
 public:
  virtual ~Runner() = default;

  // Runs one step. After an error the caller fails the step's requests.
  virtual absl::StatusOr<StepResult> Execute(const SchedulerOutput& output) = 0;

  // Blocks of `block_size` tokens the runner's KV cache holds.
  virtual int num_kv_blocks() const = 0;
  virtual int block_size() const = 0;
  virtual int vocab_size() const = 0;
};

}  // namespace sluice
