// The scheduler <-> runner contract as a property over thousands of random workloads:
// arrivals, aborts (a client gone, a stop string seen by the front), preemptions from a
// small KV cache, failed steps and malformed runner results, driven through RunStep, the
// same function the engine thread calls. A recording runner checks every message it is
// sent, and at the end it must hold no request: each one it was sent was retired exactly
// once, and every request got exactly one final output carrying its own tokens.
#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "engine/core/step.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

// Checks each SchedulerOutput against what it was sent before, applies it, then fails
// the step, answers with a malformed result, or samples. The token it samples for a
// request is a function of the request's id and position, and its logprob names the
// request, so a token or logprob attached to the wrong request is caught.
class RecordingRunner : public Runner {
 public:
  RecordingRunner(int num_blocks, int block_size, std::mt19937_64& rng)
      : num_blocks_(num_blocks), block_size_(block_size), rng_(rng) {}

  static int32_t TokenFor(RequestId id, int position) {
    return static_cast<int32_t>((id * 31 + static_cast<uint64_t>(position) * 7) % 97) + 1;
  }

  absl::StatusOr<StepResult> Execute(const SchedulerOutput& out) override {
    ++messages_;
    for (RequestId id : out.finished_ids) {
      if (++finish_reports_[id] > 1) Violation(absl::StrCat("request ", id, " finished twice"));
      held_.erase(id);
    }
    for (RequestId id : out.preempted_ids) {
      if (held_.erase(id) == 0) Violation(absl::StrCat("preempted ", id, ", which it never held"));
    }
    for (const NewRequestData& n : out.new_requests) {
      if (held_.contains(n.id)) Violation(absl::StrCat("sent ", n.id, " again while held"));
      if (finish_reports_.contains(n.id)) Violation(absl::StrCat("sent ", n.id, " after it ended"));
      held_[n.id] = {n.block_ids, n.num_computed_tokens, static_cast<int>(n.token_ids.size())};
      ++sent_;
    }
    for (const CachedRequestData& c : out.cached_requests) {
      auto it = held_.find(c.id);
      if (it == held_.end()) {
        Violation(absl::StrCat("new blocks for ", c.id, ", which it does not hold"));
        continue;
      }
      it->second.blocks.insert(it->second.blocks.end(), c.new_block_ids.begin(),
                               c.new_block_ids.end());
    }
    for (const ScheduledTokens& st : out.scheduled) {
      auto it = held_.find(st.id);
      if (it == held_.end()) {
        Violation(absl::StrCat("scheduled ", st.id, ", which it does not hold"));
        continue;
      }
      Seq& s = it->second;
      const int end = s.computed + st.num_tokens;
      const int drafts = static_cast<int>(st.draft_ids.size());
      if (end - drafts > s.num_tokens) {
        Violation(absl::StrCat("scheduled ", st.id, " past its tokens"));
      }
      if (drafts > 0 &&
          (s.computed + 1 != s.num_tokens ||
           !std::equal(st.draft_ids.begin(), st.draft_ids.end(), s.drafts.begin(),
                       s.drafts.begin() + std::min(s.drafts.size(), st.draft_ids.size())) ||
           st.draft_ids.size() > s.drafts.size())) {
        Violation(
            absl::StrCat("drafts for ", st.id, " it did not propose, or not after its last token"));
      }
      if (static_cast<int>(s.blocks.size()) * block_size_ < end) {
        Violation(absl::StrCat("scheduled ", st.id, " past its blocks"));
      }
    }
    if (out.empty()) return StepResult{};
    std::uniform_int_distribution<int> pct(0, 99);
    if (pct(rng_) < fail_percent) return absl::InternalError("device lost");
    StepResult result;
    for (const ScheduledTokens& st : out.scheduled) {
      Seq& s = held_.at(st.id);
      const int drafts = static_cast<int>(st.draft_ids.size());
      s.computed += st.num_tokens - drafts;
      if (!st.samples) continue;
      // Its own token, and after each draft that equals it the next one.
      int kept = 0;
      while (true) {
        const int32_t token = TokenFor(st.id, s.num_tokens);
        ++s.num_tokens;
        ++kept;
        result.sampled.push_back(token);
        result.logprobs.push_back(TokenLogprobs{-static_cast<float>(st.id), 0, {{token, -1.0f}}});
        if (kept > drafts || st.draft_ids[static_cast<size_t>(kept - 1)] != token) break;
        ++s.computed;
      }
      result.num_sampled.push_back(kept);
      // Drafts: the right tokens, each wrong one time in three.
      s.drafts.clear();
      for (int k = 0; k < st.propose; ++k) {
        const int32_t right = TokenFor(st.id, s.num_tokens + k);
        s.drafts.push_back(pct(rng_) < 33 ? right % 97 + 1 : right);
      }
      result.drafts.push_back(s.drafts);
    }
    if (pct(rng_) < malformed_percent && !result.sampled.empty()) result.sampled.pop_back();
    return result;
  }

  int num_kv_blocks() const override { return num_blocks_; }
  int block_size() const override { return block_size_; }
  int vocab_size() const override { return 100; }
  int num_requests() const override { return static_cast<int>(held_.size()); }

  int fail_percent = 0;
  int malformed_percent = 0;
  const std::vector<std::string>& violations() const { return violations_; }
  int64_t sent() const { return sent_; }

 private:
  struct Seq {
    std::vector<int32_t> blocks;
    int computed = 0;
    int num_tokens = 0;
    std::vector<int32_t> drafts = {};  // proposed after its last step
  };
  void Violation(std::string what) { violations_.push_back(std::move(what)); }

  const int num_blocks_, block_size_;
  std::mt19937_64& rng_;
  absl::flat_hash_map<RequestId, Seq> held_;
  absl::flat_hash_map<RequestId, int> finish_reports_;
  std::vector<std::string> violations_;
  int64_t messages_ = 0, sent_ = 0;
};

struct Outcome {
  int64_t requests = 0, preempted = 0, failed = 0, aborted = 0, sent = 0, drafts_kept = 0;
};

// One random workload; returns its tallies. Fails the test on any broken property.
Outcome RunWorkload(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  SchedulerConfig config;
  config.block_size = uni(1, 8);
  config.num_blocks = uni(6, 40);
  config.max_num_seqs = uni(1, 8);
  config.max_num_batched_tokens = uni(4, 64);
  config.max_model_len = 96;
  config.eos_token_ids = {uni(1, 97)};
  config.enable_prefix_caching = uni(0, 1) == 1;
  if (uni(0, 1) == 1) {  // speculative decoding
    config.num_speculative_tokens = uni(1, 4);
    config.speculative_disable_batch_size = uni(0, 8);
    config.step_per_token_s = uni(0, 1) * 0.002;
  }
  Scheduler scheduler(config);
  RecordingRunner runner(config.num_blocks, config.block_size, rng);
  runner.fail_percent = uni(0, 1) ? uni(1, 15) : 0;
  runner.malformed_percent = uni(0, 3) == 0 ? uni(1, 10) : 0;

  const int capacity = config.num_blocks * config.block_size;
  absl::flat_hash_map<RequestId, std::vector<int32_t>> tokens;  // per live request
  absl::flat_hash_map<RequestId, int> prompt_len;
  absl::flat_hash_set<RequestId> ended;
  std::vector<RequestId> live;
  Outcome outcome;
  RequestId next_id = 1;

  auto take = [&](const RequestOutput& o) {
    EXPECT_FALSE(ended.contains(o.id)) << "seed " << seed << ": output after the end of " << o.id;
    auto& t = tokens[o.id];
    for (size_t i = 0; i < o.new_token_ids.size(); ++i) {
      const int position = prompt_len.at(o.id) + static_cast<int>(t.size());
      EXPECT_EQ(o.new_token_ids[i], RecordingRunner::TokenFor(o.id, position))
          << "seed " << seed << ": a token of another request reached " << o.id;
      t.push_back(o.new_token_ids[i]);
    }
    for (const TokenLogprobs& lp : o.logprobs) {
      EXPECT_EQ(lp.logprob, -static_cast<float>(o.id)) << "seed " << seed << ": logprobs mixed up";
    }
    if (o.finished()) {
      ended.insert(o.id);
      live.erase(std::find(live.begin(), live.end(), o.id));
      outcome.failed += o.finish_reason == FinishReason::kError;
      outcome.aborted += o.finish_reason == FinishReason::kAbort;
    }
  };

  const int steps = uni(20, 120);
  for (int step = 0; step < steps || !scheduler.idle() || scheduler.has_unreported_finishes();
       ++step) {
    if (step > steps + 2000) {
      ADD_FAILURE() << "seed " << seed << ": the workload never drained";
      break;
    }
    if (step < steps) {
      for (int n = uni(0, 2); n > 0; --n) {
        auto r = std::make_unique<Request>();
        r->id = next_id++;
        r->arrival_seq = r->id;
        const int len = uni(1, std::min(40, capacity - 1));
        for (int i = 0; i < len; ++i) r->token_ids.push_back(uni(1, 6));  // shared prefixes
        r->num_prompt_tokens = len;
        r->sampling.max_tokens = uni(1, 24);
        r->sampling.ignore_eos = uni(0, 1) == 1;
        r->sampling.logprobs = uni(0, 1) ? 1 : -1;
        if (uni(0, 4) == 0) r->sampling.stop_token_ids = {uni(1, 97)};
        r->sampling.speculative = uni(0, 5) != 0;
        r->priority = uni(0, 3) == 0 ? -1 : 0;
        r->cache_salt = uni(0, 5) == 0 ? "tenant-b" : "";
        prompt_len[r->id] = len;
        live.push_back(r->id);
        ++outcome.requests;
        scheduler.Add(std::move(r));
      }
      // A client that went away, or a stop string the front found: abort any live request,
      // and now and then one that already ended.
      if (!live.empty() && uni(0, 6) == 0) {
        const RequestId id = live[uni(0, static_cast<int>(live.size()) - 1)];
        if (std::optional<RequestOutput> o = scheduler.Abort(id)) take(*o);
      }
      if (!ended.empty() && uni(0, 9) == 0) {
        EXPECT_FALSE(scheduler.Abort(*ended.begin()).has_value());
      }
    }
    StepOutcome s = RunStep(scheduler, runner);
    outcome.preempted += s.num_preempted;
    for (const RequestOutput& o : s.outputs) take(o);
    if (::testing::Test::HasFailure()) break;
  }
  for (const std::string& v : runner.violations()) ADD_FAILURE() << "seed " << seed << ": " << v;
  EXPECT_EQ(runner.num_requests(), 0) << "seed " << seed << ": the runner still holds requests";
  EXPECT_TRUE(live.empty()) << "seed " << seed << ": " << live.size() << " requests never ended";
  EXPECT_EQ(static_cast<int64_t>(ended.size()), outcome.requests) << "seed " << seed;
  EXPECT_EQ(scheduler.kv().num_free_blocks(), config.num_blocks) << "seed " << seed;
  outcome.sent = runner.sent();
  outcome.drafts_kept = scheduler.spec_counters().num_accepted_tokens;
  EXPECT_LE(scheduler.spec_counters().num_accepted_tokens,
            scheduler.spec_counters().num_draft_tokens);
  return outcome;
}

TEST(StepContractTest, EveryRequestSentToTheRunnerIsRetiredExactlyOnce) {
  Outcome total;
  for (uint64_t seed = 1; seed <= 3000; ++seed) {
    const Outcome o = RunWorkload(seed);
    total.requests += o.requests;
    total.preempted += o.preempted;
    total.failed += o.failed;
    total.aborted += o.aborted;
    total.sent += o.sent;
    total.drafts_kept += o.drafts_kept;
    if (::testing::Test::HasFailure()) break;
  }
  // The workloads reach every path they are meant to.
  EXPECT_GT(total.preempted, 100);
  EXPECT_GT(total.failed, 100);
  EXPECT_GT(total.aborted, 100);
  EXPECT_GT(total.sent, total.requests);  // preempted requests are sent again
  EXPECT_GT(total.drafts_kept, 1000);
  std::printf(
      "3000 workloads: %lld requests, %lld sent to the runner, %lld preemptions, "
      "%lld failed, %lld aborted\n",
      static_cast<long long>(total.requests), static_cast<long long>(total.sent),
      static_cast<long long>(total.preempted), static_cast<long long>(total.failed),
      static_cast<long long>(total.aborted));
}

}  // namespace
}  // namespace sluice
