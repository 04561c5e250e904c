// The runner turns a SchedulerOutput into a device batch, runs the model and samples.
// It never sees a hash; block ids are its only vocabulary with the scheduler.
//
// The contract, which tests/engine/core/step_contract_test.cc checks over random
// workloads: every SchedulerOutput reaches Execute, also one with nothing scheduled that
// only retires requests. Execute applies the output's state changes (requests that
// finished or were preempted leave, new ones arrive, running ones gain blocks) before
// anything that can fail or return early, so a failed step loses no retirement.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "engine/sched/scheduler.h"

namespace sluice {

class Runner {
 public:
  virtual ~Runner() = default;

  // Runs one step. After an error the caller fails the step's requests.
  virtual absl::StatusOr<StepResult> Execute(const SchedulerOutput& output) = 0;

  // Blocks of `block_size` tokens the runner's KV cache holds.
  virtual int num_kv_blocks() const = 0;
  virtual int block_size() const = 0;
  virtual int vocab_size() const = 0;
  // Requests whose state the runner holds: each leaves once the scheduler says it
  // finished or was preempted.
  virtual int num_requests() const = 0;

  // Memory by kind (MemoryUsage::other is left to the engine), and the bytes of one KV
  // block. Runners that own no memory of their own (test doubles) keep the defaults.
  virtual MemoryUsage memory() const { return {}; }
  virtual int64_t kv_bytes_per_block() const { return 0; }
};

// The part of `output` that only retires requests (finished and preempted ids), for a
// runner that must apply it before failing.
SchedulerOutput RetirementOf(const SchedulerOutput& output);

}  // namespace sluice
