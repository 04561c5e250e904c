// 10,000 random workloads (arrivals, shared prefixes, lengths, aborts, tiny caches)
// against a deterministic fake runner whose next token depends only on the tokens so
// far. Checks after every step: block accounting exact (no leak, none freed twice),
// every request finishes (none starved), and each finished request's output equals the
// same request run alone.
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "engine/sched/scheduler.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

constexpr int32_t kEos = 0;

// The fake model: next token from a hash of the last few tokens (never depends on batch).
int32_t NextToken(const std::vector<int32_t>& tokens) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = tokens.size() >= 3 ? tokens.size() - 3 : 0; i < tokens.size(); ++i) {
    h = (h ^ static_cast<uint64_t>(tokens[i])) * 1099511628211ull;
  }
  return static_cast<int32_t>(h % 50);  // eos (0) about one step in 50
}

std::vector<int32_t> RunAlone(std::vector<int32_t> tokens, int prompt_len, int max_tokens,
                              int max_len, int capacity) {
  while (true) {
    tokens.push_back(NextToken(tokens));
    const int out = static_cast<int>(tokens.size()) - prompt_len;
    if (tokens.back() == kEos || out >= max_tokens || static_cast<int>(tokens.size()) >= max_len ||
        static_cast<int>(tokens.size()) >= capacity) {
      return {tokens.begin() + prompt_len, tokens.end()};
    }
  }
}

// Holds the block-pool invariants: ref counts equal the holders' references, the free list
// holds exactly the unreferenced blocks, each once.
void CheckBlocks(const Scheduler& s, const std::map<RequestId, std::vector<int32_t>>& live,
                 const std::string& where) {
  const BlockPool& pool = s.kv().pool();
  std::vector<int> refs(pool.num_blocks(), 0);
  for (const auto& [id, unused] : live) {
    const Request* r = s.Find(id);
    if (r == nullptr) continue;
    for (int32_t b : r->kv.blocks) ++refs[b];
  }
  std::vector<int> in_free(pool.num_blocks(), 0);
  for (int32_t b : pool.FreeListForTest()) ++in_free[b];
  for (int b = 0; b < pool.num_blocks(); ++b) {
    ASSERT_EQ(pool.ref_count(b), refs[b]) << where << ": block " << b;
    ASSERT_EQ(in_free[b], refs[b] == 0 ? 1 : 0) << where << ": block " << b;
  }
}

TEST(RandomWorkloadTest, TenThousandWorkloadsLoseNothing) {
  std::mt19937_64 rng(20261127);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int64_t finished_total = 0, aborted_total = 0, preempted_total = 0;
  for (int w = 0; w < 10000; ++w) {
    SchedulerConfig c;
    c.block_size = uni(1, 8);
    c.num_blocks = uni(4, 24);
    c.max_num_batched_tokens = uni(1, 48);
    c.max_num_seqs = uni(1, 6);
    c.max_model_len = uni(8, 80);
    c.eos_token_ids = {kEos};
    c.enable_prefix_caching = uni(0, 3) != 0;
    Scheduler s(c);
    const int capacity = c.num_blocks * c.block_size;
    // Prompts drawn from 3 shared bases so prefixes repeat.
    std::vector<std::vector<int32_t>> bases(3);
    for (auto& b : bases) {
      for (int i = 0; i < 64; ++i) b.push_back(uni(1, 49));
    }
    struct Plan {
      RequestId id;
      int arrive_step, abort_step;
      std::unique_ptr<Request> request;
      std::vector<int32_t> expect;
    };
    std::vector<Plan> plans;
    const int num_requests = uni(1, 10);
    for (int i = 0; i < num_requests; ++i) {
      auto r = std::make_unique<Request>();
      r->id = static_cast<RequestId>(i + 1);
      r->arrival_seq = r->id;
      const int len = uni(1, std::min(c.max_model_len - 1, capacity - 1));
      const auto& base = bases[uni(0, 2)];
      r->token_ids.assign(base.begin(), base.begin() + std::min(len, 64));
      while (r->num_tokens() < len) r->token_ids.push_back(uni(1, 49));
      r->num_prompt_tokens = len;
      r->sampling.max_tokens = uni(1, 16);
      r->priority = uni(0, 1);
      std::vector<int32_t> expect =
          RunAlone(r->token_ids, len, r->sampling.max_tokens, c.max_model_len, capacity);
      const RequestId id = r->id;
      plans.push_back(
          {id, uni(0, 10), uni(0, 4) == 0 ? uni(0, 30) : -1, std::move(r), std::move(expect)});
    }
    std::map<RequestId, std::vector<int32_t>> live;  // id -> output so far
    std::map<RequestId, const std::vector<int32_t>*> expected;
    for (const Plan& p : plans) expected[p.id] = &p.expect;
    int done = 0;
    for (int step = 0; done < num_requests; ++step) {
      ASSERT_LT(step, 5000) << "workload " << w << " starved";
      for (Plan& p : plans) {
        if (p.arrive_step == step) {
          live[p.id] = {};
          s.Add(std::move(p.request));
        }
        if (p.abort_step == step && live.contains(p.id)) {
          ASSERT_TRUE(s.Abort(p.id).has_value());
          live.erase(p.id);
          ++done;
          ++aborted_total;
        }
      }
      const SchedulerOutput out = s.Schedule();
      preempted_total += static_cast<int64_t>(out.preempted_ids.size());
      // The fake runner: the next token of each sampling request from its own tokens.
      std::vector<int32_t> sampled;
      for (const ScheduledTokens& st : out.scheduled) {
        if (st.samples) sampled.push_back(NextToken(s.Find(st.id)->token_ids));
      }
      auto outputs = s.Update(out, StepResult{sampled, {}});
      ASSERT_TRUE(outputs.ok()) << outputs.status();
      for (const RequestOutput& d : *outputs) {
        auto& got = live.at(d.id);
        got.insert(got.end(), d.new_token_ids.begin(), d.new_token_ids.end());
        if (d.finish_reason == FinishReason::kNone) continue;
        ASSERT_EQ(got, *expected.at(d.id)) << "workload " << w << " request " << d.id;
        live.erase(d.id);
        ++done;
        ++finished_total;
      }
      CheckBlocks(s, live, "workload " + std::to_string(w) + " step " + std::to_string(step));
      if (::testing::Test::HasFatalFailure()) return;
    }
    ASSERT_TRUE(s.idle());
    ASSERT_EQ(s.kv().num_free_blocks(), c.num_blocks) << "workload " << w << " leaked blocks";
  }
  // The generator must really exercise the paths it claims to.
  EXPECT_GT(finished_total, 30000);
  EXPECT_GT(aborted_total, 1000);
  EXPECT_GT(preempted_total, 1000);
}

}  // namespace
}  // namespace sluice
