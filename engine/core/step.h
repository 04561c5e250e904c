// One engine step as a function of the scheduler and the runner, with no thread and no
// clock of its own: the whole message protocol between the two lives here, so that it
// can be tested over thousands of random workloads (tests/engine/core/step_contract_test.cc).
// Thread safety: none; the engine thread owns both arguments.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "engine/api.h"
#include "engine/runner/runner.h"
#include "engine/sched/scheduler.h"

namespace sluice {

struct StepOutcome {
  std::vector<RequestOutput> outputs;  // to deliver, in order; errors carry their message
  absl::Status status;                 // the runner's failure, when the step failed
  bool ran = false;                    // tokens were computed (not just retirement)
  int64_t prefill_tokens = 0;          // prompt tokens computed (decode rows excluded)
  int num_tokens = 0;                  // every token computed
  int num_seqs = 0;                    // requests in the batch
  int num_preempted = 0;
};

// Schedules, sends the output to the runner (also when it only retires requests),
// and hands the runner's whole result to the scheduler. A failed step fails the
// requests it scheduled; they are retired from the runner on the next step.
StepOutcome RunStep(Scheduler& scheduler, Runner& runner);

}  // namespace sluice
