// The runner turns a SchedulerOutput into a device batch, runs the model and samples.
// It never sees a hash; block ids are its only vocabulary with the scheduler.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/sched/scheduler.h"

namespace sluice {

class Runner {
 public:
  virtual ~Runner() = default;

  // Runs one step. Returns one sampled id per scheduled entry whose `samples` is set, in
  // batch order. After an error the caller fails the step's requests.
  virtual absl::StatusOr<std::vector<int32_t>> Execute(const SchedulerOutput& output) = 0;

  // Blocks of `block_size` tokens the runner's KV cache holds.
  virtual int num_kv_blocks() const = 0;
  virtual int block_size() const = 0;
  virtual int vocab_size() const = 0;
};

}  // namespace sluice
