// A runner that wraps another and makes its steps fail or hang on purpose, so that the
// engine's and the server's handling of a broken device or model can be tested end to
// end (`sluice serve --inject-step-faults SPEC`); with `rank=R`, only one tensor-parallel
// rank's part of the steps fails or hangs (a rank that dies mid-step), through the model
// group's rank hook. Never enabled unless asked for.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/cpu_model_group.h"
#include "engine/runner/runner.h"

namespace sluice {

struct StepFaults {
  int ok_steps = 0;       // steps that run normally first
  int failing_steps = 0;  // then this many fail (0: every later step)
  bool hang = false;      // the faulty steps never return instead of failing
  int rank = -1;          // >= 0: only this tensor-parallel rank's part of a step is faulty
};

// SPEC: comma-separated `after=N` (normal steps first), `fail=K` (K faulty steps, then
// normal again; default: all later steps), `hang` (faulty steps block), `rank=R` (only
// rank R of a tensor-parallel group). Example: "after=2,fail=3". Errors name the part
// that is wrong.
absl::StatusOr<StepFaults> ParseStepFaults(const std::string& spec);

// The rank hook of `faults` (faults.rank >= 0): rank faults.rank's steps after ok_steps
// fail as the spec says, or with `hang` stall until the group aborts (the others' waits
// time out); the other ranks run normally.
CpuModelGroup::RankHook RankFaultHook(const StepFaults& faults);

class FaultInjectingRunner : public Runner {
 public:
  FaultInjectingRunner(std::unique_ptr<Runner> inner, StepFaults faults);

  absl::StatusOr<StepResult> Execute(const SchedulerOutput& output) override;
  int num_kv_blocks() const override { return inner_->num_kv_blocks(); }
  int block_size() const override { return inner_->block_size(); }
  int vocab_size() const override { return inner_->vocab_size(); }
  int num_requests() const override { return inner_->num_requests(); }

 private:
  std::unique_ptr<Runner> inner_;
  const StepFaults faults_;
  int64_t steps_ = 0;
};

}  // namespace sluice
