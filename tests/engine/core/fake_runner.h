// A deterministic runner for engine tests: the next token is a hash of the last tokens,
// so outputs never depend on batching. A gate can hold steps to keep requests waiting;
// tests wait for the engine to reach a step (WaitForStep) rather than sleeping.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "engine/runner/runner.h"

namespace sluice::testing {

class FakeRunner : public Runner {
 public:
  FakeRunner(int num_blocks, int block_size, int vocab = 50)
      : num_blocks_(num_blocks), block_size_(block_size), vocab_(vocab) {}

  static int32_t Next(const std::vector<int32_t>& t, int vocab) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = t.size() >= 3 ? t.size() - 3 : 0; i < t.size(); ++i) {
      h = (h ^ static_cast<uint64_t>(t[i])) * 1099511628211ull;
    }
    return static_cast<int32_t>(h % vocab);
  }

  absl::StatusOr<StepResult> Execute(const SchedulerOutput& out) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!out.empty()) ++entered_;
      entered_cv_.notify_all();
      cv_.wait(lock, [&] { return open_; });
      ++steps_;
    }
    if (step_delay_.count() > 0) std::this_thread::sleep_for(step_delay_);
    std::lock_guard<std::mutex> lock(tokens_mu_);
    // The contract: state changes first, whatever happens to the step.
    for (RequestId id : out.finished_ids) tokens_.erase(id);
    for (RequestId id : out.preempted_ids) tokens_.erase(id);
    for (const auto& n : out.new_requests) tokens_[n.id] = n.token_ids;
    if (out.empty()) return StepResult{};
    if (fail_next_) {
      fail_next_ = false;
      return absl::InternalError("injected step failure");
    }
    StepResult result;
    for (const auto& st : out.scheduled) {
      if (!st.samples) continue;
      auto& t = tokens_.at(st.id);
      t.push_back(Next(t, vocab_));
      result.sampled.push_back(t.back());
      result.logprobs.emplace_back();
    }
    return result;
  }
  int num_kv_blocks() const override { return num_blocks_; }
  int block_size() const override { return block_size_; }
  int vocab_size() const override { return vocab_; }
  int num_requests() const override {
    std::lock_guard<std::mutex> lock(tokens_mu_);
    return static_cast<int>(tokens_.size());
  }

  void SetOpen(bool open) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = open;
    }
    cv_.notify_all();
  }
  void FailNextStep() { fail_next_ = true; }
  // Waits until the engine has entered its n-th step with work (held there while the
  // gate is shut); false after 10 s.
  bool WaitForStep(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return entered_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return entered_ >= n; });
  }
  int steps_entered() {
    std::lock_guard<std::mutex> lock(mu_);
    return entered_;
  }
  // REQUIRES: called before the engine starts stepping.
  void SetStepDelay(std::chrono::milliseconds d) { step_delay_ = d; }

 private:
  int num_blocks_, block_size_, vocab_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  int steps_ = 0;
  int entered_ = 0;  // steps with work that reached Execute
  std::condition_variable entered_cv_;
  std::atomic<bool> fail_next_{false};
  std::chrono::milliseconds step_delay_{0};
  mutable std::mutex tokens_mu_;  // the engine thread steps, a test thread counts
  absl::flat_hash_map<RequestId, std::vector<int32_t>> tokens_;
};

}  // namespace sluice::testing
