#include "engine/core/step.h"

#include <string>
#include <utility>

#include "spdlog/spdlog.h"

namespace sluice {

StepOutcome RunStep(Scheduler& scheduler, Runner& runner) {
  StepOutcome outcome;
  const SchedulerOutput out = scheduler.Schedule();
  outcome.num_preempted = static_cast<int>(out.preempted_ids.size());
  if (out.empty() && !out.retires()) return outcome;
  absl::StatusOr<StepResult> result = runner.Execute(out);
  if (out.empty()) {
    // NOTE: a retire-only step computes nothing; a runner that fails it has still
    // dropped the requests (it applies retirement first), so there is nobody to fail.
    if (!result.ok()) {
      spdlog::warn("the runner failed a step that only retires {} requests: {}",
                   out.finished_ids.size() + out.preempted_ids.size(), result.status().ToString());
    }
    return outcome;
  }
  outcome.ran = true;
  absl::StatusOr<std::vector<RequestOutput>> outputs =
      result.ok() ? scheduler.Update(out, *std::move(result)) : result.status();
  if (!outputs.ok()) {
    outcome.status = outputs.status();
    const std::string message(outcome.status.message());
    for (const ScheduledTokens& st : out.scheduled) {
      if (std::optional<RequestOutput> o = scheduler.Finish(st.id, FinishReason::kError)) {
        o->error = message;
        outcome.outputs.push_back(std::move(*o));
      }
    }
    return outcome;
  }
  outcome.outputs = *std::move(outputs);
  outcome.num_seqs = static_cast<int>(out.scheduled.size());
  for (const ScheduledTokens& st : out.scheduled) {
    outcome.num_tokens += st.num_tokens;
    const int known = st.num_tokens - static_cast<int>(st.draft_ids.size());
    if (!(known == 1 && st.samples)) outcome.prefill_tokens += known;
  }
  return outcome;
}

}  // namespace sluice
