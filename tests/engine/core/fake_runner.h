// A deterministic runner for engine tests: the next token is a hash of the last tokens,
// so outputs never depend on batching. A gate can hold steps to keep requests waiting.
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
      cv_.wait(lock, [&] { return open_; });
      ++steps_;
    }
    if (step_delay_.count() > 0) std::this_thread::sleep_for(step_delay_);
    if (fail_next_) {
      fail_next_ = false;
      return absl::InternalError("injected step failure");
    }
    std::lock_guard<std::mutex> lock(tokens_mu_);
    for (RequestId id : out.finished_ids) tokens_.erase(id);
    for (RequestId id : out.preempted_ids) tokens_.erase(id);
    for (const auto& n : out.new_requests) tokens_[n.id] = n.token_ids;
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

  void SetOpen(bool open) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = open;
    }
    cv_.notify_all();
  }
  void FailNextStep() { fail_next_ = true; }
  // Requests whose state the runner holds: each is dropped once the scheduler says it
  // finished (or was preempted).
  size_t num_requests() {
    std::lock_guard<std::mutex> lock(tokens_mu_);
    return tokens_.size();
  }
  // REQUIRES: called before the engine starts stepping.
  void SetStepDelay(std::chrono::milliseconds d) { step_delay_ = d; }

 private:
  int num_blocks_, block_size_, vocab_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  int steps_ = 0;
  std::atomic<bool> fail_next_{false};
  std::chrono::milliseconds step_delay_{0};
  std::mutex tokens_mu_;  // the engine thread steps, a test thread counts
  absl::flat_hash_map<RequestId, std::vector<int32_t>> tokens_;
};

}  // namespace sluice::testing
