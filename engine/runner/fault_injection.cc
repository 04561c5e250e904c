#include "engine/runner/fault_injection.h"

#include <chrono>
#include <memory>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spdlog/spdlog.h"

namespace sluice {

absl::StatusOr<StepFaults> ParseStepFaults(const std::string& spec) {
  StepFaults f;
  for (absl::string_view part : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    int value = 0;
    const bool numeric = absl::SimpleAtoi(kv.second, &value) && value >= 0;
    if (kv.first == "after" && numeric) {
      f.ok_steps = value;
    } else if (kv.first == "fail" && numeric) {
      f.failing_steps = value;
    } else if (kv.first == "hang" && kv.second.empty()) {
      f.hang = true;
    } else if (kv.first == "rank" && numeric) {
      f.rank = value;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("step fault spec '", spec, "': cannot read '", std::string(part),
                       "' (expected after=N, fail=N, hang or rank=R)"));
    }
  }
  return f;
}

CpuModelGroup::RankHook RankFaultHook(const StepFaults& faults) {
  spdlog::warn("FAULT INJECTION: tensor parallel rank {}: steps after {} {}", faults.rank,
               faults.ok_steps, faults.hang ? "hang" : "fail");
  auto steps = std::make_shared<int64_t>(0);  // touched by the faulty rank's thread only
  return [faults, steps](int rank, const Communicator* comm) -> absl::Status {
    if (rank != faults.rank) return absl::OkStatus();
    const int64_t step = ++*steps;
    const bool faulty = step > faults.ok_steps &&
                        (faults.failing_steps == 0 ||
                         step <= static_cast<int64_t>(faults.ok_steps) + faults.failing_steps);
    if (!faulty) return absl::OkStatus();
    if (faults.hang) {
      // Stalls until the others give up on it (their collectives time out and abort the
      // group); alone, for ever, as a wedged device.
      while (comm == nullptr || comm->status().ok()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      return comm->status();
    }
    return absl::InternalError(absl::StrCat("injected fault: step ", step, " failed"));
  };
}

FaultInjectingRunner::FaultInjectingRunner(std::unique_ptr<Runner> inner, StepFaults faults)
    : inner_(std::move(inner)), faults_(faults) {
  spdlog::warn("FAULT INJECTION: steps after {} {} ({})", faults_.ok_steps,
               faults_.hang ? "hang" : "fail",
               faults_.failing_steps > 0 ? absl::StrCat(faults_.failing_steps, " of them")
                                         : std::string("all of them"));
}

absl::StatusOr<StepResult> FaultInjectingRunner::Execute(const SchedulerOutput& output) {
  // A step that only retires requests runs nothing: it is not one of the steps counted.
  if (output.scheduled.empty()) return inner_->Execute(output);
  const int64_t step = ++steps_;
  const bool faulty = step > faults_.ok_steps &&
                      (faults_.failing_steps == 0 ||
                       step <= static_cast<int64_t>(faults_.ok_steps) + faults_.failing_steps);
  if (!faulty) return inner_->Execute(output);
  // As a device that fails mid-step would: the step's state changes are applied first,
  // so that requests ending with the failure are still retired.
  if (absl::StatusOr<StepResult> r = inner_->Execute(RetirementOf(output)); !r.ok()) {
    return r.status();
  }
  if (faults_.hang) {
    // As a wedged device would: the step never returns. Only the engine's watchdog (the
    // liveness probe failing) and a restart end it.
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return absl::InternalError(absl::StrCat("injected fault: step ", step, " failed"));
}

}  // namespace sluice
