// Per-step expectation tables for the scheduler: chunked prefill, decode batching,
// preemption by recompute, aborts mid-prefill and mid-decode, prefix hits.
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "engine/sched/scheduler.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

struct Step {
  std::vector<std::pair<RequestId, int>> scheduled;  // (id, tokens) in batch order
  std::vector<RequestId> preempted;
  std::vector<RequestId> finished;  // finished by this step's Update
};

std::unique_ptr<Request> MakeRequest(RequestId id, int prompt_len, int max_tokens,
                                     int first_token = 100) {
  auto r = std::make_unique<Request>();
  r->id = id;
  r->arrival_seq = id;
  r->token_ids.resize(prompt_len);
  std::iota(r->token_ids.begin(), r->token_ids.end(), first_token);
  r->num_prompt_tokens = prompt_len;
  r->sampling.max_tokens = max_tokens;
  r->sampling.temperature = 0.0f;
  return r;
}

// Runs one step with every sampled token = 7 and checks it against `want`.
void RunStep(Scheduler& s, const Step& want, int step_index) {
  SCOPED_TRACE("step " + std::to_string(step_index));
  const SchedulerOutput out = s.Schedule();
  std::vector<std::pair<RequestId, int>> got;
  int samples = 0;
  for (const auto& st : out.scheduled) {
    got.emplace_back(st.id, st.num_tokens);
    samples += st.samples;
  }
  EXPECT_EQ(got, want.scheduled);
  EXPECT_EQ(out.preempted_ids, want.preempted);
  const std::vector<int32_t> sampled(samples, 7);
  std::vector<RequestId> finished;
  auto outputs = s.Update(out, StepResult{sampled, {}});
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  for (const RequestOutput& d : *outputs) {
    if (d.finish_reason != FinishReason::kNone) finished.push_back(d.id);
  }
  EXPECT_EQ(finished, want.finished);
}

void RunTable(Scheduler& s, const std::vector<Step>& table) {
  for (size_t i = 0; i < table.size(); ++i) RunStep(s, table[i], static_cast<int>(i));
}

SchedulerConfig SmallConfig(int num_blocks, int budget, int max_seqs) {
  SchedulerConfig c;
  c.num_blocks = num_blocks;
  c.block_size = 4;
  c.max_num_batched_tokens = budget;
  c.max_num_seqs = max_seqs;
  c.max_model_len = 64;
  c.eos_token_ids = {0};
  return c;
}

TEST(SchedulerTest, ChunkedPrefillThenDecode) {
  Scheduler s(SmallConfig(16, 8, 4));
  s.Add(MakeRequest(1, 10, 3));
  RunTable(s, {
                  {{{1, 8}}, {}, {}},  // first chunk: no token sampled
                  {{{1, 2}}, {}, {}},  // rest of the prompt: first token
                  {{{1, 1}}, {}, {}},
                  {{{1, 1}}, {}, {1}},  // third token: max_tokens
                  {{}, {}, {}},
              });
  EXPECT_TRUE(s.idle());
  EXPECT_EQ(s.kv().num_free_blocks(), 16);
}

TEST(SchedulerTest, RunningFirstThenWaitingWithinBudget) {
  Scheduler s(SmallConfig(32, 8, 4));
  s.Add(MakeRequest(1, 5, 2));
  s.Add(MakeRequest(2, 6, 2));
  RunTable(s, {
                  {{{1, 5}, {2, 3}}, {}, {}},  // 2 gets what is left of the budget
                  {{{1, 1}, {2, 3}}, {}, {1}},
                  {{{2, 1}}, {}, {2}},
              });
  EXPECT_TRUE(s.idle());
}

TEST(SchedulerTest, MaxNumSeqsLimitsRunning) {
  Scheduler s(SmallConfig(32, 64, 1));
  s.Add(MakeRequest(1, 3, 2));
  s.Add(MakeRequest(2, 3, 1));
  RunTable(s, {
                  {{{1, 3}}, {}, {}},
                  {{{1, 1}}, {}, {1}},
                  {{{2, 3}}, {}, {2}},
              });
}

TEST(SchedulerTest, PreemptsNewestWhenBlocksRunOut) {
  // 4 blocks of 4 tokens. Each request's 7-token prompt takes 2 blocks.
  Scheduler s(SmallConfig(4, 16, 4));
  s.Add(MakeRequest(1, 7, 4, 100));
  s.Add(MakeRequest(2, 7, 4, 200));
  RunTable(s, {
                  {{{1, 7}, {2, 7}}, {}, {}},  // 8 tokens each: 2 full blocks each
                  {{{1, 1}, {2, 1}}, {}, {}},  // the 8th tokens still fit
                  {{{1, 1}}, {2}, {}},         // 1 needs a 3rd block: newest (2) preempted
                  {{{1, 1}}, {}, {1}},         // 2 waits: its 2nd block was evicted, 2 short
                  {{{2, 5}}, {}, {}},          // 2 resumes: 1st block hit, 5 recomputed
                  {{{2, 1}}, {}, {2}},
              });
  EXPECT_EQ(s.kv().num_free_blocks(), 4);
}

TEST(SchedulerTest, PreemptionByRecomputeResumesAndFinishes) {
  Scheduler s(SmallConfig(5, 16, 4));
  s.Add(MakeRequest(1, 7, 3, 100));
  s.Add(MakeRequest(2, 7, 3, 200));
  RunTable(s, {
                  {{{1, 7}, {2, 7}}, {}, {}},  // 4 blocks used, 1 free
                  {{{1, 1}, {2, 1}}, {}, {}},  // the 8th tokens fit in the 2nd blocks
                  {{{1, 1}}, {2}, {1}},        // 1 takes the free block; 2 is preempted
                  // 2 resumes: its first 2 blocks are prefix hits, 1 token recomputed
                  {{{2, 1}}, {}, {2}},
              });
  EXPECT_TRUE(s.idle());
  EXPECT_EQ(s.kv().num_free_blocks(), 5);
}

TEST(SchedulerTest, AbortMidPrefillAndMidDecodeFreesBlocks) {
  Scheduler s(SmallConfig(16, 4, 4));
  s.Add(MakeRequest(1, 10, 8));
  s.Add(MakeRequest(2, 2, 8));
  RunStep(s, {{{1, 4}}, {}, {}}, 0);
  auto d = s.Abort(1);  // mid-prefill
  ASSERT_TRUE(d);
  EXPECT_EQ(d->finish_reason, FinishReason::kAbort);
  RunStep(s, {{{2, 2}}, {}, {}}, 1);
  RunStep(s, {{{2, 1}}, {}, {}}, 2);
  EXPECT_TRUE(s.Abort(2));  // mid-decode
  EXPECT_FALSE(s.Abort(2));
  const SchedulerOutput out = s.Schedule();
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(out.finished_ids, (std::vector<RequestId>{2}));
  EXPECT_EQ(s.kv().num_free_blocks(), 16);
}

TEST(SchedulerTest, PriorityThenArrivalOrdersWaiting) {
  Scheduler s(SmallConfig(32, 64, 1));
  auto low = MakeRequest(1, 2, 1);
  low->priority = 5;
  s.Add(std::move(low));
  s.Add(MakeRequest(2, 2, 1));
  s.Add(MakeRequest(3, 2, 1));
  RunTable(s, {{{{2, 2}}, {}, {2}}, {{{3, 2}}, {}, {3}}, {{{1, 2}}, {}, {1}}});
}

TEST(SchedulerTest, StopsOnEosAndStopTokenIds) {
  Scheduler s(SmallConfig(32, 64, 4));
  auto a = MakeRequest(1, 3, 10);
  a->sampling.stop_token_ids = {7};
  s.Add(std::move(a));
  RunStep(s, {{{1, 3}}, {}, {1}}, 0);  // the fake sampler always returns 7
}

TEST(SchedulerTest, SharedPrefixIsComputedOnce) {
  Scheduler s(SmallConfig(32, 64, 4));
  s.Add(MakeRequest(1, 10, 1));
  RunStep(s, {{{1, 10}}, {}, {1}}, 0);
  auto b = MakeRequest(2, 10, 1);
  s.Add(std::move(b));
  RunStep(s, {{{2, 2}}, {}, {2}}, 1);  // 8 tokens (2 blocks) from the cache
  EXPECT_EQ(s.kv().prefix_counters().hit_tokens, 8);
}

// A request that cannot get its blocks stays waiting and is tried again each step; its
// prefix lookup counts once, when it is admitted.
TEST(SchedulerTest, AFailedAdmissionCountsItsPrefixLookupOnce) {
  Scheduler s(SmallConfig(4, 64, 4));  // 4 blocks of 4 tokens
  s.Add(MakeRequest(1, 12, 3));        // holds 3 blocks, 4 once it decodes past 12
  RunStep(s, {{{1, 12}}, {}, {}}, 0);
  s.Add(MakeRequest(2, 8, 1, 500));  // needs 2 blocks: waits while 1 runs
  RunStep(s, {{{1, 1}}, {}, {}}, 1);
  RunStep(s, {{{1, 1}}, {}, {1}}, 2);
  EXPECT_EQ(s.num_waiting(), 1);
  RunStep(s, {{{2, 8}}, {}, {2}}, 3);
  EXPECT_EQ(s.kv().prefix_counters().queried_tokens, 12 + 8);
}

// The runner's result must match what was scheduled; a mismatch changes nothing, so no
// token lands on another request.
TEST(SchedulerTest, UpdateRefusesAResultThatDoesNotMatchTheStep) {
  Scheduler s(SmallConfig(16, 64, 4));
  s.Add(MakeRequest(1, 4, 3));
  s.Add(MakeRequest(2, 4, 3));
  const SchedulerOutput out = s.Schedule();
  ASSERT_EQ(out.scheduled.size(), 2u);
  auto short_result = s.Update(out, StepResult{{7}, {}});
  EXPECT_FALSE(short_result.ok());
  EXPECT_EQ(s.Find(1)->num_tokens(), 4);
  EXPECT_EQ(s.Find(1)->num_computed_tokens, 0);
  auto bad_logprobs = s.Update(out, StepResult{{7, 7}, {TokenLogprobs{}}});
  EXPECT_FALSE(bad_logprobs.ok());
}

// A request scoring its prompt reads nothing from the prefix cache, is told to the runner
// as such, and gets one score per prompt token after the first, chunk by chunk, with its
// first output; a result with the wrong number of scores changes nothing.
TEST(SchedulerTest, PromptScoresArriveChunkByChunkAndSkipThePrefixCache) {
  Scheduler s(SmallConfig(16, 6, 4));
  s.Add(MakeRequest(1, 9, 1));
  for (int step = 0; step < 3; ++step) {
    const SchedulerOutput out = s.Schedule();
    std::vector<int32_t> sampled;
    for (const auto& st : out.scheduled) {
      if (st.samples) sampled.push_back(7);
    }
    ASSERT_TRUE(s.Update(out, StepResult{sampled, {}, {}}).ok());
  }
  ASSERT_EQ(s.Find(1), nullptr);  // finished; its 8 full tokens (2 blocks) are cached
  auto scoring = MakeRequest(2, 9, 2);
  scoring->sampling.prompt_logprobs = 1;
  s.Add(std::move(scoring));
  SchedulerOutput out = s.Schedule();
  ASSERT_EQ(out.new_requests.size(), 1u);
  EXPECT_TRUE(out.new_requests[0].scores_prompt);
  EXPECT_EQ(out.new_requests[0].num_computed_tokens, 0) << "no prefix hit for a scored prompt";
  ASSERT_EQ(out.scheduled[0].num_tokens, 6);
  auto scores = [](int n, float base) {
    std::vector<TokenLogprobs> v(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) v[static_cast<size_t>(i)].logprob = base - static_cast<float>(i);
    return v;
  };
  EXPECT_FALSE(s.Update(out, StepResult{{}, {}, {scores(5, -1)}}).ok()) << "6 rows score 6";
  EXPECT_EQ(s.Find(2)->num_computed_tokens, 0);
  ASSERT_TRUE(s.Update(out, StepResult{{}, {}, {scores(6, -1)}}).ok());
  out = s.Schedule();
  ASSERT_EQ(out.scheduled[0].num_tokens, 3);
  ASSERT_TRUE(out.scheduled[0].samples);
  // Positions 6 and 7 score tokens 7 and 8; position 8 predicts the first output.
  auto first = s.Update(out, StepResult{{7}, {}, {scores(2, -7)}});
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 1u);
  const std::vector<TokenLogprobs>& got = (*first)[0].prompt_logprobs;
  ASSERT_EQ(got.size(), 8u);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].logprob, -1.0f - i);
  out = s.Schedule();
  auto second = s.Update(out, StepResult{{7}, {}, {}});
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE((*second)[0].prompt_logprobs.empty()) << "scores go out once";
  EXPECT_EQ(s.kv().prefix_counters().queried_tokens, 9) << "the scored prompt looked nothing up";
}

// ---- Speculative decoding ----

SchedulerConfig SpecConfig(int num_blocks, int budget, int max_seqs, int k) {
  SchedulerConfig c = SmallConfig(num_blocks, budget, max_seqs);
  c.num_speculative_tokens = k;
  c.step_per_token_s = 0.0;  // extra positions cost nothing: every draft is worth it
  return c;
}

// A result keeping `sampled` for one entry, with `drafts` proposed after it.
StepResult Kept(std::vector<int32_t> sampled, std::vector<int32_t> drafts = {}) {
  StepResult r;
  r.num_sampled = {static_cast<int32_t>(sampled.size())};
  r.sampled = std::move(sampled);
  r.drafts = {std::move(drafts)};
  return r;
}

// Drafts ride with the request's last token, count against the budget, and only the
// kept ones advance its computed tokens.
TEST(SchedulerTest, DraftsAreVerifiedWithTheLastTokenAndOnlyKeptOnesCount) {
  Scheduler s(SpecConfig(16, 64, 4, 3));
  s.Add(MakeRequest(1, 4, 20));
  SchedulerOutput out = s.Schedule();
  ASSERT_EQ(out.scheduled.size(), 1u);
  EXPECT_EQ(out.scheduled[0].propose, 3);
  EXPECT_TRUE(out.scheduled[0].draft_ids.empty());
  ASSERT_TRUE(s.Update(out, Kept({7}, {8, 9, 10})).ok());

  out = s.Schedule();
  ASSERT_EQ(out.scheduled.size(), 1u);
  EXPECT_EQ(out.scheduled[0].num_tokens, 4);  // token 7, then drafts 8 9 10
  EXPECT_EQ(out.scheduled[0].draft_ids, (std::vector<int32_t>{8, 9, 10}));
  EXPECT_TRUE(out.scheduled[0].samples);
  auto outputs = s.Update(out, Kept({8, 9, 11}, {12}));  // two kept, then 11
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  ASSERT_EQ(outputs->size(), 1u);
  EXPECT_EQ((*outputs)[0].new_token_ids, (std::vector<int32_t>{8, 9, 11}));
  EXPECT_EQ(s.Find(1)->num_tokens(), 8);         // 4 + 7 8 9 11
  EXPECT_EQ(s.Find(1)->num_computed_tokens, 7);  // all but 11
  EXPECT_EQ(s.spec_counters().num_drafts, 1);
  EXPECT_EQ(s.spec_counters().num_draft_tokens, 3);
  EXPECT_EQ(s.spec_counters().num_accepted_tokens, 2);
  EXPECT_EQ(s.spec_counters().accepted_per_position, (std::vector<int64_t>{1, 1, 0}));

  out = s.Schedule();  // the one draft left, with 11
  ASSERT_EQ(out.scheduled.size(), 1u);
  EXPECT_EQ(out.scheduled[0].num_tokens, 2);
  EXPECT_FALSE(s.Update(out, Kept({12, 13, 14})).ok()) << "three tokens from one draft";
  EXPECT_FALSE(s.Update(out, Kept({})).ok()) << "no token at all";
  EXPECT_EQ(s.Find(1)->num_tokens(), 8) << "a refused result changes nothing";
}

// A draft counts as kept when the runner drew it, also when the runner stopped there
// (a grammar that admits nothing more) without a token of its own after it.
TEST(SchedulerTest, AKeptDraftCountsEvenWithoutATokenAfterIt) {
  Scheduler s(SpecConfig(16, 64, 4, 2));
  s.Add(MakeRequest(1, 4, 20));
  SchedulerOutput out = s.Schedule();
  ASSERT_TRUE(s.Update(out, Kept({7}, {8, 9})).ok());
  out = s.Schedule();
  ASSERT_TRUE(s.Update(out, Kept({8})).ok());  // 8 was the draft: kept, then stopped
  EXPECT_EQ(s.spec_counters().num_accepted_tokens, 1);
  EXPECT_EQ(s.spec_counters().accepted_per_position, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(s.Find(1)->num_computed_tokens, 5);  // the prompt and 7; 8 is computed next
}

// Drafts are cut to what the budget, max_tokens and the context window leave.
TEST(SchedulerTest, DraftsAreCutToTheBudgetAndTheTokensLeft) {
  {
    Scheduler s(SpecConfig(16, 3, 4, 4));
    s.Add(MakeRequest(1, 2, 20));
    SchedulerOutput out = s.Schedule();
    ASSERT_TRUE(s.Update(out, Kept({7}, {8, 9, 10, 11})).ok());
    out = s.Schedule();
    EXPECT_EQ(out.scheduled[0].draft_ids, (std::vector<int32_t>{8, 9})) << "budget 3";
  }
  {
    Scheduler s(SpecConfig(16, 64, 4, 4));
    s.Add(MakeRequest(1, 2, 3));
    SchedulerOutput out = s.Schedule();
    ASSERT_TRUE(s.Update(out, Kept({7}, {8, 9, 10, 11})).ok());
    out = s.Schedule();  // one token out of 3: two more at most, so one draft
    EXPECT_EQ(out.scheduled[0].draft_ids, (std::vector<int32_t>{8}));
    auto outputs = s.Update(out, Kept({8, 9}));
    ASSERT_TRUE(outputs.ok());
    EXPECT_EQ((*outputs)[0].finish_reason, FinishReason::kLength);
    EXPECT_EQ((*outputs)[0].num_output_tokens, 3);
  }
}

// A stop token among the kept tokens ends the request there; what followed it is dropped.
TEST(SchedulerTest, AStopAmongKeptTokensEndsTheRequestThere) {
  Scheduler s(SpecConfig(16, 64, 4, 3));
  s.Add(MakeRequest(1, 4, 20));
  SchedulerOutput out = s.Schedule();
  ASSERT_TRUE(s.Update(out, Kept({7}, {8, 0, 9})).ok());
  out = s.Schedule();
  auto outputs = s.Update(out, Kept({8, 0, 9, 5}));  // 0 is the end of sequence
  ASSERT_TRUE(outputs.ok());
  EXPECT_EQ((*outputs)[0].new_token_ids, (std::vector<int32_t>{8, 0}));
  EXPECT_EQ((*outputs)[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(s.kv().num_free_blocks(), 16);
  EXPECT_EQ(s.Find(1), nullptr);
}

// Rejected drafts never reach the prefix cache: a block is cached once its kept tokens
// fill it.
TEST(SchedulerTest, OnlyKeptTokensEnterThePrefixCache) {
  Scheduler s(SpecConfig(16, 64, 4, 3));
  s.Add(MakeRequest(1, 4, 20));  // tokens 100..103: block 0 full after the prefill
  SchedulerOutput out = s.Schedule();
  ASSERT_TRUE(s.Update(out, Kept({7}, {8, 9, 10})).ok());
  out = s.Schedule();  // 7 8 9 10 would fill block 1, but none is kept
  ASSERT_TRUE(s.Update(out, Kept({5})).ok());
  auto probe = [&](RequestId id, std::vector<int32_t> prompt) {
    auto r = MakeRequest(id, static_cast<int>(prompt.size()), 1);
    r->token_ids = std::move(prompt);
    s.Add(std::move(r));
    const SchedulerOutput o = s.Schedule();
    for (const NewRequestData& n : o.new_requests) {
      if (n.id == id) return n.num_computed_tokens;
    }
    return -1;
  };
  EXPECT_EQ(probe(2, {100, 101, 102, 103, 7, 8, 9, 10, 42}), 4)
      << "the drafts' block is not cached";
}

// Drafts never preempt anyone (short of blocks, a request verifies none), never take
// the token of a running request scheduled after them, and are not asked for beyond
// what a request may still emit.
TEST(SchedulerTest, DraftsGiveWayToBlocksAndToOtherRequests) {
  {
    Scheduler s(SpecConfig(2, 64, 4, 4));  // two blocks of 4 tokens, one each
    s.Add(MakeRequest(1, 3, 20));
    s.Add(MakeRequest(2, 3, 20));
    SchedulerOutput out = s.Schedule();
    ASSERT_TRUE(s.Update(out, StepResult{{7, 7}, {}, {}, {}, {1, 1}, {{8, 9, 10}, {}}}).ok());
    out = s.Schedule();  // 1's drafts would need a third block: only 2's preemption frees one
    EXPECT_TRUE(out.preempted_ids.empty());
    ASSERT_EQ(out.scheduled.size(), 2u);
    EXPECT_TRUE(out.scheduled[0].draft_ids.empty());
    EXPECT_EQ(out.scheduled[0].num_tokens, 1);
  }
  {
    // Three blocks of 4: 1 holds one (3 + 1 tokens), 2 holds one (4 + 1 tokens, one
    // more needed next step); the free block is 2's, not for 1's drafts.
    Scheduler s(SpecConfig(3, 64, 4, 4));
    s.Add(MakeRequest(1, 3, 20));
    s.Add(MakeRequest(2, 4, 20));
    SchedulerOutput out = s.Schedule();
    ASSERT_TRUE(s.Update(out, StepResult{{7, 7}, {}, {}, {}, {1, 1}, {{8, 9, 10}, {}}}).ok());
    out = s.Schedule();
    EXPECT_TRUE(out.preempted_ids.empty());
    ASSERT_EQ(out.scheduled.size(), 2u);
    EXPECT_TRUE(out.scheduled[0].draft_ids.empty());
  }
  {
    Scheduler s(SpecConfig(64, 4, 4, 4));  // a budget of 4 tokens
    s.Add(MakeRequest(1, 2, 20));
    s.Add(MakeRequest(2, 2, 20));
    SchedulerOutput out = s.Schedule();
    StepResult r{{7, 7}, {}, {}, {}, {1, 1}, {{8, 9, 10, 11}, {8, 9, 10, 11}}};
    ASSERT_TRUE(s.Update(out, r).ok());
    out = s.Schedule();
    ASSERT_EQ(out.scheduled.size(), 2u) << "request 2 still gets its token";
    EXPECT_EQ(out.scheduled[0].draft_ids.size(), 2u);  // 4 - its token - 2's token
    EXPECT_EQ(out.scheduled[1].num_tokens, 1);
  }
  {
    Scheduler s(SpecConfig(64, 64, 4, 4));
    s.Add(MakeRequest(1, 2, 3));
    SchedulerOutput out = s.Schedule();
    EXPECT_EQ(out.scheduled[0].propose, 1) << "3 tokens: this step's, then one draft and one more";
    ASSERT_TRUE(s.Update(out, Kept({7}, {8})).ok());
    out = s.Schedule();
    EXPECT_EQ(out.scheduled[0].propose, 0) << "nothing is left to draft for";
  }
}

// No drafts at or past speculative_disable_batch_size running requests, nor for a
// request that opted out.
TEST(SchedulerTest, DraftsStopAtTheBatchLimitAndForOptOuts) {
  {
    SchedulerConfig c = SpecConfig(64, 256, 8, 2);
    c.speculative_disable_batch_size = 2;
    Scheduler s(c);
    s.Add(MakeRequest(1, 4, 20));
    SchedulerOutput out = s.Schedule();
    EXPECT_EQ(out.scheduled[0].propose, 2) << "nothing runs yet";
    ASSERT_TRUE(s.Update(out, Kept({7}, {8, 9})).ok());
    s.Add(MakeRequest(2, 4, 20));
    s.Add(MakeRequest(3, 4, 20));
    out = s.Schedule();  // one running when it starts: drafts verified, then two admitted
    EXPECT_EQ(out.scheduled[0].draft_ids.size(), 2u);
    StepResult three;
    three.num_sampled = {1, 1, 1};
    three.sampled = {1, 2, 3};
    three.drafts = {{4, 4}, {4, 4}, {4, 4}};
    ASSERT_TRUE(s.Update(out, three).ok());
    out = s.Schedule();  // three running: past the limit
    for (const ScheduledTokens& st : out.scheduled) {
      EXPECT_TRUE(st.draft_ids.empty()) << st.id;
      EXPECT_EQ(st.propose, 0) << st.id;
    }
  }
  {
    Scheduler s(SpecConfig(16, 64, 4, 2));
    auto r = MakeRequest(1, 4, 20);
    r->sampling.speculative = false;
    s.Add(std::move(r));
    EXPECT_EQ(s.Schedule().scheduled[0].propose, 0);
  }
}

// The bar a draft must clear is the share of a step one more token costs: it rises with
// the batch, follows the measured steps, and a request whose drafts keep missing falls
// under it, then drifts back and is tried again.
TEST(SchedulerTest, DraftsAreSizedByTheCostOfAStepsTokens) {
  SchedulerConfig c = SpecConfig(1024, 256, 8, 4);
  c.max_model_len = 4096;
  c.step_base_s = 0.010;
  c.step_per_token_s = 0.001;
  Scheduler s(c);
  EXPECT_NEAR(s.DraftBar(1), 0.001 / 0.011, 1e-9);
  EXPECT_LT(s.DraftBar(1), s.DraftBar(8));
  EXPECT_LT(s.DraftBar(8), s.DraftBar(64));
  EXPECT_LT(s.DraftBar(64), 1.0);
  for (int n : {1, 8, 40, 5, 64, 2}) s.ObserveStep(0.004 + 0.0005 * n, n);
  EXPECT_NEAR(s.DraftBar(1), 0.0005 / 0.0045, 1e-6) << "the fit of t(n) = 4 ms + 0.5 ms n";
  s.ObserveStep(0.0, 10);  // no information: ignored
  EXPECT_NEAR(s.DraftBar(1), 0.0005 / 0.0045, 1e-6);

  // Request 1's drafts always miss, request 2's are always kept.
  s.Add(MakeRequest(1, 4, 2000));
  s.Add(MakeRequest(2, 4, 2000, 200));
  SchedulerOutput out = s.Schedule();
  EXPECT_EQ(out.scheduled[0].propose, 1) << "the engine-wide 1/2 less its error: 0.32 > 0.11";
  std::vector<int> proposed;
  for (int step = 0; step < 120; ++step) {
    ASSERT_EQ(out.scheduled.size(), 2u) << "step " << step;
    StepResult r;
    for (const ScheduledTokens& st : out.scheduled) {
      const int drafts = static_cast<int>(st.draft_ids.size());
      std::vector<int32_t> kept = st.id == 1 ? std::vector<int32_t>{5} : st.draft_ids;
      if (st.id == 2) kept.push_back(6);
      r.num_sampled.push_back(static_cast<int32_t>(kept.size()));
      r.sampled.insert(r.sampled.end(), kept.begin(), kept.end());
      r.drafts.push_back(std::vector<int32_t>(static_cast<size_t>(st.propose), 8));
      if (st.id == 1) proposed.push_back(drafts > 0 ? 1 : 0);
    }
    ASSERT_TRUE(s.Update(out, r).ok());
    out = s.Schedule();
  }
  const auto stopped = std::find(proposed.begin() + 1, proposed.end(), 0);
  EXPECT_LT(stopped - proposed.begin(), 10) << "misses stop the drafts";
  EXPECT_NE(std::find(stopped, proposed.end(), 1), proposed.end())
      << "and the request is tried again later";
  EXPECT_EQ(out.scheduled[1].draft_ids.size(), 4u) << "request 2 drafts all it may";
}

}  // namespace
}  // namespace sluice
