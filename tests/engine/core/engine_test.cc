// The engine loop against a fake runner: admission refusals with retry delays, aborts
// from other threads, drain, step failures. Tests wait on the runner's steps and drive a
// manual clock; none sleeps to synchronise.
#include <chrono>
#include <thread>

#include "engine/api.h"
#include "engine/runner/fault_injection.h"
#include "engine/runner/runner.h"
#include "gtest/gtest.h"
#include "tests/engine/core/fake_runner.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using testing::FakeRunner;

// The engine's time, moved by the test.
class ManualClock {
 public:
  Clock::time_point Now() const { return start_ + std::chrono::nanoseconds(offset_ns_.load()); }
  void Advance(std::chrono::milliseconds d) {
    offset_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  }

 private:
  const Clock::time_point start_ = Clock::now();
  std::atomic<int64_t> offset_ns_{0};
};

struct Harness {
  FakeRunner* runner;
  std::shared_ptr<ManualClock> clock;
  std::unique_ptr<Engine> engine;
};

// With `manual_clock` the engine's time moves only when the test says; a test that
// measures rates needs the real one.
Harness Make(EngineConfig config, int num_blocks = 64, int block_size = 4,
             bool manual_clock = true) {
  auto runner = std::make_unique<FakeRunner>(num_blocks, block_size);
  FakeRunner* raw = runner.get();
  if (config.max_model_len == 2048) config.max_model_len = 128;
  auto clock = std::make_shared<ManualClock>();
  if (manual_clock) config.clock = [clock] { return clock->Now(); };
  auto engine = Engine::Create(config, std::move(runner));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return {raw, clock, std::move(*engine)};
}

SubmitParams Params(int prompt_len, int max_tokens) {
  SubmitParams p;
  for (int i = 0; i < prompt_len; ++i) p.prompt_ids.push_back(1 + i % 40);
  p.sampling.max_tokens = max_tokens;
  p.sampling.temperature = 0.0f;
  p.sampling.ignore_eos = true;
  return p;
}

// Collects a stream's outputs until it finishes.
std::vector<RequestOutput> Collect(RequestStream& s) {
  std::vector<RequestOutput> all;
  while (all.empty() || !all.back().finished()) {
    auto o = s.Pop(10s);
    if (!o) break;
    all.push_back(std::move(*o));
  }
  return all;
}

TEST(EngineTest, GeneratesAndFinishesWithLength) {
  Harness h = Make({});
  auto stream = h.engine->Submit(Params(5, 6));
  ASSERT_TRUE(stream.ok()) << stream.status();
  auto outs = Collect(**stream);
  ASSERT_FALSE(outs.empty());
  int tokens = 0;
  for (auto& o : outs) tokens += static_cast<int>(o.new_token_ids.size());
  EXPECT_EQ(tokens, 6);
  EXPECT_EQ(outs.back().finish_reason, FinishReason::kLength);
  EXPECT_EQ(outs.back().num_prompt_tokens, 5);
  EXPECT_TRUE(h.engine->WaitIdle(5s));
  EXPECT_EQ(h.engine->Stats().kv_usage, 0.0);
}

TEST(EngineTest, RefusesWhenWaitingRequestsExceedLimitWithRetryDelay) {
  EngineConfig c;
  c.max_num_seqs = 1;
  c.max_waiting_requests = 2;
  Harness h = Make(c);
  h.runner->SetOpen(false);  // hold the engine in its first step
  auto first = h.engine->Submit(Params(4, 2));
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(h.runner->WaitForStep(1));  // running, in its (held) step
  ASSERT_TRUE(h.engine->Submit(Params(4, 2)).ok());
  ASSERT_TRUE(h.engine->Submit(Params(4, 2)).ok());
  auto refused = h.engine->Submit(Params(4, 2));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("requests waiting"), std::string::npos);
  ASSERT_TRUE(RetryAfterMs(refused.status()).has_value());
  EXPECT_GE(*RetryAfterMs(refused.status()), 100);
  h.runner->SetOpen(true);
  EXPECT_TRUE(h.engine->WaitIdle(5s));
  EXPECT_EQ(h.engine->Stats().num_refused, 1);
  EXPECT_TRUE(h.engine->Submit(Params(4, 2)).ok());  // room again
}

TEST(EngineTest, RefusesWhenWaitingTokensExceedLimit) {
  EngineConfig c;
  c.max_num_seqs = 1;
  c.max_waiting_tokens = 20;
  Harness h = Make(c);
  h.runner->SetOpen(false);
  ASSERT_TRUE(h.engine->Submit(Params(4, 2)).ok());
  ASSERT_TRUE(h.runner->WaitForStep(1));
  ASSERT_TRUE(h.engine->Submit(Params(15, 2)).ok());
  auto refused = h.engine->Submit(Params(6, 2));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("prompt tokens waiting"), std::string::npos);
  h.runner->SetOpen(true);
}

// Admission counts as waiting only what cannot start at the next step: a burst that fits
// the free running slots and the waiting limit is admitted whole, the rest refused.
TEST(EngineTest, AdmissionSubtractsFreeRunningSlots) {
  EngineConfig c;
  c.max_num_seqs = 16;
  c.max_waiting_requests = 8;
  Harness h = Make(c, /*num_blocks=*/1024);
  for (int round = 0; round < 5; ++round) {
    h.runner->SetOpen(false);
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (int i = 0; i < 10; ++i) {
      auto s = h.engine->Submit(Params(4, 3));
      ASSERT_TRUE(s.ok()) << "round " << round << ", request " << i << ": " << s.status();
      streams.push_back(*s);
    }
    h.runner->SetOpen(true);
    for (auto& s : streams) EXPECT_EQ(Collect(*s).back().finish_reason, FinishReason::kLength);
    ASSERT_TRUE(h.engine->WaitIdle(5s));
  }
  h.runner->SetOpen(false);
  std::vector<std::shared_ptr<RequestStream>> admitted;
  int refused = 0;
  for (int i = 0; i < 30; ++i) {
    auto s = h.engine->Submit(Params(4, 3));
    if (s.ok()) {
      admitted.push_back(*s);
    } else {
      EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted) << s.status();
      ++refused;
    }
  }
  EXPECT_EQ(refused, 30 - 16 - 8);
  h.runner->SetOpen(true);
  for (auto& s : admitted) EXPECT_EQ(Collect(*s).back().finish_reason, FinishReason::kLength);
}

TEST(EngineTest, PredictedTtftRefusesOnlyBehindAQueue) {
  EngineConfig c;
  c.max_num_seqs = 1;
  c.slo_ttft_ms = 1.0;  // any queue at all predicts more than 2 x 1 ms
  Harness h = Make(c, 64, 4, /*manual_clock=*/false);  // the prefill rate is measured
  h.runner->SetStepDelay(5ms);
  auto first = h.engine->Submit(Params(40, 50));  // idle: admitted whatever the SLO
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE((*first)->Pop(5s).has_value());  // its prefill step measured the rate
  ASSERT_GT(h.engine->Stats().prefill_tokens_per_s, 0.0);
  h.runner->SetOpen(false);
  ASSERT_TRUE(h.runner->WaitForStep(h.runner->steps_entered() + 1));  // held, still running
  ASSERT_TRUE(h.engine->Submit(Params(40, 2)).ok());  // nothing waiting yet: admitted
  auto refused = h.engine->Submit(Params(40, 2));     // behind a queue: refused
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("predicted time to first token"), std::string::npos);
  EXPECT_TRUE(RetryAfterMs(refused.status()).has_value());
  h.runner->SetOpen(true);
  EXPECT_TRUE(h.engine->WaitIdle(10s));
}

TEST(EngineTest, InvalidRequestsNameTheProblem) {
  Harness h = Make({});
  auto too_long = h.engine->Submit(Params(200, 2));
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.status().message().find("context window is 128"), std::string::npos);
  SubmitParams bad_id = Params(3, 2);
  bad_id.prompt_ids[1] = 9999;
  auto oov = h.engine->Submit(bad_id);
  ASSERT_FALSE(oov.ok());
  EXPECT_NE(oov.status().message().find("9999"), std::string::npos);
  EXPECT_FALSE(h.engine->Submit(Params(0, 2)).ok());
  EXPECT_FALSE(h.engine->Submit(Params(3, 0)).ok());
  EXPECT_EQ(h.engine->Stats().num_invalid, 4);
}

TEST(EngineTest, AbortFromAnotherThreadFreesBlocks) {
  Harness h = Make({});
  h.runner->SetStepDelay(2ms);
  auto stream = h.engine->Submit(Params(8, 100));
  ASSERT_TRUE(stream.ok());
  ASSERT_TRUE((*stream)->Pop(5s).has_value());  // running
  std::thread([&] { h.engine->Abort((*stream)->id()); }).join();
  auto outs = Collect(**stream);
  ASSERT_FALSE(outs.empty());
  EXPECT_EQ(outs.back().finish_reason, FinishReason::kAbort);
  EXPECT_TRUE(h.engine->WaitIdle(5s));
  const EngineStats s = h.engine->Stats();
  EXPECT_EQ(s.kv_usage, 0.0);
  EXPECT_EQ(s.num_running, 0);
  // It was the last one running: no step with work followed, yet the runner must forget it.
  EXPECT_EQ(s.num_runner_requests, 0) << "the runner still holds the aborted request";
  EXPECT_EQ(h.runner->num_requests(), 0);
  EXPECT_EQ(s.num_aborted, 1);
}

TEST(EngineTest, TheRunnerForgetsEveryRequestThatEnded) {
  Harness h = Make({});
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 4; ++i) {
    auto s = h.engine->Submit(Params(4 + i, 3 + i));
    ASSERT_TRUE(s.ok());
    streams.push_back(std::move(*s));
  }
  for (auto& s : streams) Collect(*s);
  EXPECT_TRUE(h.engine->WaitIdle(5s));
  EXPECT_EQ(h.engine->Stats().num_runner_requests, 0);
  EXPECT_EQ(h.runner->num_requests(), 0);
}

TEST(EngineTest, DrainFinishesInFlightAndRefusesNew) {
  Harness h = Make({});
  auto stream = h.engine->Submit(Params(8, 20));
  ASSERT_TRUE(stream.ok());
  h.engine->StartDrain();
  auto refused = h.engine->Submit(Params(4, 2));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  auto outs = Collect(**stream);
  EXPECT_EQ(outs.back().finish_reason, FinishReason::kLength);
  EXPECT_TRUE(h.engine->WaitIdle(5s));
}

TEST(EngineTest, FailedStepFailsItsRequestsAndEngineStaysUp) {
  Harness h = Make({});
  h.runner->FailNextStep();
  auto stream = h.engine->Submit(Params(4, 3));
  ASSERT_TRUE(stream.ok());
  auto outs = Collect(**stream);
  EXPECT_EQ(outs.back().finish_reason, FinishReason::kError);
  EXPECT_NE(outs.back().error.find("injected"), std::string::npos);
  auto next = h.engine->Submit(Params(4, 3));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(Collect(**next).back().finish_reason, FinishReason::kLength);
}

TEST(EngineTest, HealthFollowsFailedStepsAndTheGracePeriod) {
  EngineConfig config;
  config.unready_after_failed_steps = 3;
  config.unready_grace_s = 0.2;
  Harness h = Make(config);
  auto fail_one = [&] {
    h.runner->FailNextStep();
    auto s = h.engine->Submit(Params(4, 2));
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(Collect(**s).back().finish_reason, FinishReason::kError);
  };
  // Two failures, then a good step: the count starts again.
  fail_one();
  fail_one();
  EXPECT_TRUE(h.engine->Health().ready);
  auto good = h.engine->Submit(Params(4, 2));
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(Collect(**good).back().finish_reason, FinishReason::kLength);
  fail_one();
  fail_one();
  EXPECT_TRUE(h.engine->Health().ready);
  fail_one();  // three in a row
  EngineHealth health = h.engine->Health();
  EXPECT_FALSE(health.ready);
  EXPECT_TRUE(health.live);
  EXPECT_NE(health.reason.find("the last 3 engine steps failed (injected step failure)"),
            std::string::npos)
      << health.reason;
  h.clock->Advance(300ms);
  health = h.engine->Health();
  EXPECT_FALSE(health.ready);
  EXPECT_FALSE(health.live);
  EXPECT_NE(health.reason.find("past the grace period"), std::string::npos) << health.reason;
  EXPECT_EQ(h.engine->Stats().num_failed_steps, 5);
}

TEST(EngineTest, AStepPastTheTimeoutFailsReadinessAndLiveness) {
  EngineConfig config;
  config.step_timeout_s = 0.05;
  Harness h = Make(config);
  h.runner->SetOpen(false);  // the next step blocks, as a wedged device would
  auto s = h.engine->Submit(Params(4, 2));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(h.runner->WaitForStep(1));
  EXPECT_TRUE(h.engine->Health().live);
  h.clock->Advance(150ms);
  EngineHealth health = h.engine->Health();
  EXPECT_FALSE(health.ready);
  EXPECT_FALSE(health.live);
  EXPECT_NE(health.reason.find("has been running for"), std::string::npos) << health.reason;
  h.runner->SetOpen(true);
  EXPECT_EQ(Collect(**s).back().finish_reason, FinishReason::kLength);
  EXPECT_TRUE(h.engine->Health().ready);
  EXPECT_TRUE(h.engine->Health().live);
}

TEST(FaultInjectionTest, SpecChoosesWhichStepsFail) {
  auto faults = ParseStepFaults("after=2,fail=3");
  ASSERT_TRUE(faults.ok()) << faults.status();
  FaultInjectingRunner runner(std::make_unique<FakeRunner>(8, 4), *faults);
  SchedulerOutput step;
  step.scheduled.push_back(ScheduledTokens{1, 1, /*samples=*/false});
  std::vector<bool> ok;
  for (int i = 0; i < 7; ++i) {
    ok.push_back(runner.Execute(step).ok());
    // A step that only retires requests runs nothing, fails never and is not counted.
    EXPECT_TRUE(runner.Execute(SchedulerOutput{}).ok());
  }
  EXPECT_EQ(ok, (std::vector<bool>{true, true, false, false, false, true, true}));
  auto forever = ParseStepFaults("after=1");
  ASSERT_TRUE(forever.ok());
  EXPECT_EQ(forever->failing_steps, 0);
  EXPECT_FALSE(forever->hang);
  EXPECT_TRUE(ParseStepFaults("hang")->hang);
  auto bad = ParseStepFaults("after=2,fail=x");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'fail=x'"), std::string::npos) << bad.status();
}

TEST(EngineTest, ShutdownAbortsWhatIsLeft) {
  Harness h = Make({});
  h.runner->SetOpen(false);
  auto stream = h.engine->Submit(Params(4, 3));
  ASSERT_TRUE(stream.ok());
  ASSERT_TRUE(h.runner->WaitForStep(1));
  std::thread opener([&] { h.runner->SetOpen(true); });
  h.engine->Shutdown();
  opener.join();
  auto outs = Collect(**stream);
  ASSERT_FALSE(outs.empty());
  EXPECT_TRUE(outs.back().finished());
}

}  // namespace
}  // namespace sluice
