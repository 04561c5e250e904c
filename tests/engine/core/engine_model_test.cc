// The engine on the real tiny model: batched outputs equal the golden and the
// single-sequence outputs, under preemption and prefix caching.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "engine/api.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"
#include "engine/model/generate.h"
#include "engine/runner/cpu_runner.h"
#include "engine/runner/fault_injection.h"
#include "engine/spec/draft_model_proposer.h"
#include "engine/spec/proposer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/tokenizer.h"
#include "tests/common/fixtures.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

std::shared_ptr<CpuModel> TinyModel() {
  static std::shared_ptr<CpuModel> model = [] {
    auto m = CpuModel::Load(testing::TinyModelDir());
    EXPECT_TRUE(m.ok()) << m.status();
    return std::shared_ptr<CpuModel>(std::move(*m));
  }();
  return model;
}

// Speculative decoding for EngineOver: drafts from `proposer`, k a step, at any batch
// size and acceptance (a step's extra positions priced at nothing).
struct Speculation {
  std::unique_ptr<Proposer> proposer;
  int k = 4;
};

// An engine over `group` (one rank or several) with the server's step buffers.
std::unique_ptr<Engine> EngineOver(std::unique_ptr<CpuModelGroup> group, int max_seqs, int budget,
                                   Speculation spec = {}) {
  EngineConfig c;
  c.max_num_seqs = max_seqs;
  c.max_num_batched_tokens = budget;
  c.max_model_len = group->config().max_position_embeddings;
  c.eos_token_ids = group->config().eos_token_ids;
  c.max_waiting_requests = 1000;
  auto runner = std::make_unique<CpuRunner>(std::move(group));
  if (spec.proposer) {
    c.num_speculative_tokens = spec.k;
    c.spec_step_per_token_s = 0.0;
    c.spec_cost_from_steps = false;
    runner->SetProposer(std::move(spec.proposer));
  }
  runner->ReserveStepBuffers(budget, max_seqs, c.num_speculative_tokens);  // as the server does
  auto engine = Engine::Create(c, std::move(runner));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return std::move(*engine);
}

std::unique_ptr<Engine> MakeEngineFor(std::shared_ptr<CpuModel> model, int num_blocks,
                                      int block_size, int max_seqs, int budget) {
  return EngineOver(std::make_unique<CpuModelGroup>(std::move(model), num_blocks, block_size),
                    max_seqs, budget);
}

// The same over a tensor-parallel group of the model in `dir`.
std::unique_ptr<Engine> MakeTpEngine(const std::string& dir, int tp, int num_blocks, int block_size,
                                     int max_seqs, int budget,
                                     CpuModelGroup::RankHook hook = nullptr,
                                     std::chrono::milliseconds timeout = 120s) {
  auto group = CpuModelGroup::Load(dir, tp, num_blocks, block_size, false, 0, nullptr, timeout);
  EXPECT_TRUE(group.ok()) << group.status();
  if (!group.ok()) return nullptr;
  if (hook) (*group)->SetRankHook(std::move(hook));
  return EngineOver(std::move(*group), max_seqs, budget);
}

std::unique_ptr<Engine> MakeEngine(int num_blocks, int block_size, int max_seqs, int budget) {
  return MakeEngineFor(TinyModel(), num_blocks, block_size, max_seqs, budget);
}

// The tiny model with n-gram drafts.
std::unique_ptr<Engine> MakeNgramEngine(int num_blocks, int block_size, int max_seqs, int budget,
                                        int k = 4) {
  Speculation spec;
  spec.proposer = std::make_unique<NgramProposer>(1, 3);
  spec.k = k;
  return EngineOver(std::make_unique<CpuModelGroup>(TinyModel(), num_blocks, block_size), max_seqs,
                    budget, std::move(spec));
}

struct Result {
  std::vector<int32_t> ids;
  FinishReason reason = FinishReason::kNone;
  int cached = 0;
};

Result Wait(RequestStream& s) {
  Result r;
  while (r.reason == FinishReason::kNone) {
    auto o = s.Pop(60s);
    if (!o) {
      ADD_FAILURE() << "request " << s.id() << " timed out";
      break;
    }
    r.ids.insert(r.ids.end(), o->new_token_ids.begin(), o->new_token_ids.end());
    r.reason = o->finish_reason;
    r.cached = o->num_cached_prompt_tokens;
  }
  return r;
}

SubmitParams Greedy(std::vector<int32_t> prompt, int max_tokens, std::string salt = "") {
  SubmitParams p;
  p.prompt_ids = std::move(prompt);
  p.sampling.temperature = 0.0f;
  p.sampling.max_tokens = max_tokens;
  p.sampling.ignore_eos = true;
  p.cache_salt = std::move(salt);
  return p;
}

// The tiny model's golden prompts submitted together give their greedy ids, and the
// engine preempted some of them on the way.
void ExpectGoldenIdsUnderPreemption(Engine& engine) {
  const auto golden = testing::ReadJsonOrDie(testing::SharedDir() + "/fixtures/golden_tiny.json");
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& c : golden["cases"]) {
    auto s = engine.Submit(Greedy(c["prompt_ids"].get<std::vector<int32_t>>(), 32));
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    EXPECT_EQ(Wait(*streams[i]).ids, golden["cases"][i]["greedy_ids"].get<std::vector<int32_t>>())
        << "prompt " << i;
  }
  EXPECT_GT(engine.Stats().num_preemptions, 0);
  EXPECT_TRUE(engine.WaitIdle(5s));
  EXPECT_EQ(engine.Stats().kv_usage, 0.0);
}

TEST(EngineModelTest, GoldenPromptsTogetherUnderPreemption) {
  // 12 blocks of 8 tokens: far less than 8 prompts x (prompt + 32) needs at once.
  ExpectGoldenIdsUnderPreemption(*MakeEngine(12, 8, 8, 64));
}

// Two ranks, batched under preemption: the golden ids still (each rank's cache holds its
// KV head for the blocks the one scheduler hands out).
TEST(EngineModelTest, TensorParallelGoldenPromptsTogetherUnderPreemption) {
  auto engine = MakeTpEngine(testing::TinyModelDir(), 2, 12, 8, 8, 64);
  ASSERT_NE(engine, nullptr);
  ExpectGoldenIdsUnderPreemption(*engine);
}

// One rank dies in the fourth step: every request in flight ends with its error, nobody
// waits for ever, and the group stays dead (later requests fail too, and after three
// failed steps the engine reports itself unready).
TEST(EngineModelTest, AFailedRankFailsEveryRequestCleanly) {
  StepFaults faults;
  faults.ok_steps = 3;
  faults.rank = 1;
  auto engine = MakeTpEngine(testing::TinyModelDir(), 2, 64, 16, 8, 256, RankFaultHook(faults));
  ASSERT_NE(engine, nullptr);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 4; ++i) {
    auto s = engine->Submit(Greedy({1, 100 + i, 200 + i, 300 + i}, 32));
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  for (auto& s : streams) {
    Result r;
    std::string error;
    while (r.reason == FinishReason::kNone) {
      auto o = s->Pop(60s);
      ASSERT_TRUE(o.has_value()) << "request " << s->id() << " never finished";
      r.ids.insert(r.ids.end(), o->new_token_ids.begin(), o->new_token_ids.end());
      r.reason = o->finish_reason;
      error = o->error;
    }
    EXPECT_EQ(r.reason, FinishReason::kError);
    EXPECT_NE(error.find("tensor parallel rank 1: injected fault: step 4 failed"),
              std::string::npos)
        << error;
    EXPECT_LE(r.ids.size(), 3u);  // the tokens of the steps before
  }
  for (int i = 0; i < 3; ++i) {
    auto s = engine->Submit(Greedy({1, 2, 3}, 4));
    ASSERT_TRUE(s.ok()) << s.status();
    Result r = Wait(**s);
    EXPECT_EQ(r.reason, FinishReason::kError);
  }
  EXPECT_FALSE(engine->Health().ready);
  EXPECT_NE(engine->Health().reason.find("tensor parallel rank 1"), std::string::npos)
      << engine->Health().reason;
}

// One rank stalls in the third step: the others' collectives time out and abort the group,
// so the step fails (DeadlineExceeded, naming the wait) instead of hanging the engine.
TEST(EngineModelTest, AStalledRankTimesOutTheGroup) {
  StepFaults faults;
  faults.ok_steps = 2;
  faults.hang = true;
  faults.rank = 1;
  auto engine =
      MakeTpEngine(testing::TinyModelDir(), 2, 64, 16, 8, 256, RankFaultHook(faults), 300ms);
  ASSERT_NE(engine, nullptr);
  auto s = engine->Submit(Greedy({1, 5, 6, 7}, 16));
  ASSERT_TRUE(s.ok()) << s.status();
  std::string error;
  FinishReason reason = FinishReason::kNone;
  while (reason == FinishReason::kNone) {
    auto o = (*s)->Pop(60s);
    ASSERT_TRUE(o.has_value()) << "the request never finished";
    reason = o->finish_reason;
    error = o->error;
  }
  EXPECT_EQ(reason, FinishReason::kError);
  EXPECT_NE(error.find("waited 300 ms for the other ranks"), std::string::npos) << error;
}

// The architecture variants (QK-norm; experts; sinks, windows, YaRN): their golden prompts, twice
// each, batched under preemption, give transformers' single-run greedy ids.
TEST(EngineModelTest, VariantsBatchedUnderPreemptionMatchTheirGoldens) {
  const std::string variants = testing::SharedDir() + "/fixtures/variants/";
  for (const std::string& dir :
       {variants + "qwen3-dense", variants + "qwen3-moe", variants + "gpt-oss",
        testing::SourceRoot() + "/tests/fixtures/mixtral"}) {
    SCOPED_TRACE(dir);
    auto loaded = CpuModel::Load(dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    auto engine = MakeEngineFor(std::shared_ptr<CpuModel>(std::move(*loaded)), 30, 8, 6, 64);
    const auto golden = testing::ReadJsonOrDie(dir + "/golden.json");
    std::vector<std::shared_ptr<RequestStream>> streams;
    std::vector<std::vector<int32_t>> want;
    for (int copy = 0; copy < 2; ++copy) {
      for (const auto& c : golden["cases"]) {
        const auto ids = c["greedy_ids"].get<std::vector<int32_t>>();
        auto st = engine->Submit(
            Greedy(c["prompt_ids"].get<std::vector<int32_t>>(), static_cast<int>(ids.size())));
        ASSERT_TRUE(st.ok()) << st.status();
        streams.push_back(*st);
        want.push_back(ids);
      }
    }
    for (size_t i = 0; i < streams.size(); ++i) {
      EXPECT_EQ(Wait(*streams[i]).ids, want[i]) << "request " << i;
    }
    EXPECT_GT(engine->Stats().num_preemptions, 0);
  }
}

TEST(EngineModelTest, SharedPrefixIsServedFromCacheWithSameOutput) {
  std::vector<int32_t> prefix;
  for (int i = 0; i < 256; ++i) prefix.push_back(10 + (i * 7) % 3000);
  auto with_tail = [&](int tail) {
    auto p = prefix;
    for (int i = 0; i < 5; ++i) p.push_back(tail + i);
    return p;
  };
  auto engine = MakeEngine(256, 16, 4, 512);
  auto first = engine->Submit(Greedy(with_tail(100), 8));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(Wait(**first).cached, 0);
  auto second = engine->Submit(Greedy(with_tail(200), 8));
  ASSERT_TRUE(second.ok());
  const Result hit = Wait(**second);
  EXPECT_GE(hit.cached, 240);
  auto other_salt = engine->Submit(Greedy(with_tail(200), 8, "tenant-b"));
  ASSERT_TRUE(other_salt.ok());
  const Result miss = Wait(**other_salt);
  EXPECT_EQ(miss.cached, 0);
  EXPECT_EQ(hit.ids, miss.ids);  // the cache changes nothing but the work done
}

TEST(EngineModelTest, RandomWorkloadsEqualRequestsRunAlone) {
  std::shared_ptr<CpuModel> model = TinyModel();
  std::mt19937 rng(7);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::map<std::pair<std::vector<int32_t>, int>, std::vector<int32_t>> alone;
  std::vector<int32_t> base;
  for (int i = 0; i < 64; ++i) base.push_back(uni(5, 4000));
  int checked = 0;
  for (int w = 0; w < 200; ++w) {
    // Caches from just enough for the longest request (43 + 8 tokens) to roomy.
    const int block_size = 4 << uni(0, 2);
    const int min_blocks = 52 / block_size + 1;
    auto engine = MakeEngine(uni(min_blocks, 3 * min_blocks), block_size, uni(1, 6), uni(8, 96));
    std::vector<std::pair<SubmitParams, std::shared_ptr<RequestStream>>> reqs;
    for (int i = uni(1, 5); i > 0; --i) {
      std::vector<int32_t> prompt(base.begin(), base.begin() + uni(1, 40));
      for (int j = uni(0, 3); j > 0; --j) prompt.push_back(uni(5, 4000));
      SubmitParams p = Greedy(prompt, uni(1, 8));
      auto s = engine->Submit(p);
      ASSERT_TRUE(s.ok()) << s.status();
      reqs.emplace_back(std::move(p), *s);
      if (uni(0, 3) == 0) std::this_thread::sleep_for(1ms);  // staggered arrivals
    }
    if (uni(0, 4) == 0) engine->Abort(reqs[0].second->id());
    std::vector<std::pair<const SubmitParams*, Result>> done;
    for (auto& [p, s] : reqs) done.emplace_back(&p, Wait(*s));
    ASSERT_TRUE(engine->WaitIdle(5s));
    ASSERT_EQ(engine->Stats().kv_usage, 0.0) << "workload " << w << " leaked blocks";
    engine.reset();  // the model is free again for the single-sequence reference
    for (const auto& [p, got] : done) {
      if (got.reason == FinishReason::kAbort) continue;
      ASSERT_EQ(got.reason, FinishReason::kLength) << "workload " << w;
      auto key = std::make_pair(p->prompt_ids, p->sampling.max_tokens);
      if (!alone.contains(key)) {
        GenerateOptions o;
        o.max_tokens = p->sampling.max_tokens;
        o.ignore_eos = true;
        auto r = Generate(*model, p->prompt_ids, o);
        ASSERT_TRUE(r.ok());
        alone[key] = r->output_ids;
      }
      ASSERT_EQ(got.ids, alone[key]) << "workload " << w;
      ++checked;
    }
  }
  EXPECT_GT(checked, 400);
}

// Prompt logprobs against transformers: a golden prompt followed by its 32 greedy tokens,
// scored as one prompt. Each position's best alternative is transformers' argmax, and
// over the greedy part the top 5 and their gaps are transformers' top-5 logits.
void ExpectGoldenScores(const nlohmann::json& c, const std::vector<TokenLogprobs>& scores,
                        const std::string& what) {
  const auto prompt = c["prompt_ids"].get<std::vector<int32_t>>();
  const auto greedy = c["greedy_ids"].get<std::vector<int32_t>>();
  ASSERT_EQ(scores.size(), prompt.size() + greedy.size() - 1) << what;
  for (size_t i = 0; i + 1 < prompt.size(); ++i) {
    ASSERT_FALSE(scores[i].top.empty()) << what;
    EXPECT_EQ(scores[i].top[0].first, c["position_argmax"][i].get<int32_t>()) << what << " @" << i;
  }
  for (size_t j = 0; j + 1 < greedy.size(); ++j) {
    const TokenLogprobs& s = scores[prompt.size() - 1 + j];
    const auto& top5 = c["greedy_top5"][j];
    ASSERT_EQ(s.top.size(), 5u) << what;
    EXPECT_EQ(s.rank, 1) << what << " greedy token " << j << " is the argmax";
    EXPECT_FLOAT_EQ(s.logprob, s.top[0].second) << what;
    for (size_t k = 0; k < 5; ++k) {
      EXPECT_EQ(s.top[k].first, top5[k][0].get<int32_t>()) << what << " @" << j << " #" << k;
      const double gap = s.top[0].second - s.top[k].second;
      const double want = top5[0][1].get<double>() - top5[k][1].get<double>();
      EXPECT_NEAR(gap, want, 1e-3) << what << " @" << j << " #" << k;
    }
  }
}

std::vector<int32_t> GoldenPromptAndGreedy(const nlohmann::json& c) {
  auto ids = c["prompt_ids"].get<std::vector<int32_t>>();
  for (const auto& t : c["greedy_ids"]) ids.push_back(t.get<int32_t>());
  return ids;
}

TEST(EngineModelTest, PromptLogprobsMatchTransformersAcrossChunks) {
  const auto golden = testing::ReadJsonOrDie(testing::SharedDir() + "/fixtures/golden_tiny.json");
  // Chunks of at most 16 tokens: prompts of up to 79 tokens are scored a chunk at a time,
  // several in one step.
  auto engine = MakeEngine(128, 8, 8, 16);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& c : golden["cases"]) {
    SubmitParams p = Greedy(GoldenPromptAndGreedy(c), 0);
    p.sampling.prompt_logprobs = 5;
    auto s = engine->Submit(p);
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    auto o = streams[i]->Pop(60s);
    ASSERT_TRUE(o.has_value());
    EXPECT_EQ(o->finish_reason, FinishReason::kLength);
    EXPECT_TRUE(o->new_token_ids.empty()) << "max_tokens 0 scores the prompt alone";
    EXPECT_EQ(o->num_output_tokens, 0);
    ExpectGoldenScores(golden["cases"][i], o->prompt_logprobs, "prompt " + std::to_string(i));
  }
  EXPECT_TRUE(engine->WaitIdle(5s));
  EXPECT_EQ(engine->Stats().kv_usage, 0.0);
}

TEST(EngineModelTest, PromptLogprobsSurvivePreemptionHalfwayThroughThePrompt) {
  const auto golden = testing::ReadJsonOrDie(testing::SharedDir() + "/fixtures/golden_tiny.json");
  // 10 blocks of 8 tokens, 9 tokens a step. A decoding request of 40 + 24 tokens grows
  // into the blocks the scored prompt (41 tokens, 8 a step) holds, and preempts it
  // before it is scored whole, more than once.
  auto engine = MakeEngine(10, 8, 2, 9);
  std::vector<int32_t> other;
  for (int i = 0; i < 40; ++i) other.push_back(100 + i * 13);
  auto decoding = engine->Submit(Greedy(other, 24));
  ASSERT_TRUE(decoding.ok());
  SubmitParams p = Greedy(GoldenPromptAndGreedy(golden["cases"][0]), 0);
  p.sampling.prompt_logprobs = 5;
  auto scored = engine->Submit(p);
  ASSERT_TRUE(scored.ok());
  auto o = (*scored)->Pop(60s);
  ASSERT_TRUE(o.has_value());
  ExpectGoldenScores(golden["cases"][0], o->prompt_logprobs, "preempted prompt");
  EXPECT_EQ(Wait(**decoding).ids.size(), 24u);
  EXPECT_GE(engine->Stats().num_preemptions, 1);
}

TEST(EngineModelTest, PromptLogprobsAreComputedNotReadFromThePrefixCache) {
  const auto golden = testing::ReadJsonOrDie(testing::SharedDir() + "/fixtures/golden_tiny.json");
  const auto& c = golden["cases"][7];  // the longest prompt
  auto engine = MakeEngine(64, 8, 4, 256);
  const std::vector<int32_t> ids = GoldenPromptAndGreedy(c);
  ASSERT_TRUE(Wait(**engine->Submit(Greedy(ids, 1))).reason == FinishReason::kLength);
  ASSERT_GE(Wait(**engine->Submit(Greedy(ids, 1))).cached, 64) << "the prompt is cached";
  SubmitParams p = Greedy(ids, 4);
  p.sampling.prompt_logprobs = 5;
  p.sampling.logprobs = 0;
  auto s = engine->Submit(p);
  ASSERT_TRUE(s.ok());
  auto first = (*s)->Pop(60s);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->num_cached_prompt_tokens, 0);
  ExpectGoldenScores(c, first->prompt_logprobs, "after a cache hit");
  ASSERT_EQ(first->new_token_ids.size(), 1u);
  ASSERT_EQ(first->logprobs.size(), 1u);
  Result rest = Wait(**s);
  EXPECT_EQ(rest.ids.size(), 3u) << "generation goes on after the scored prompt";
}

std::shared_ptr<const grammar::Vocabulary> TinyVocabulary() {
  static std::shared_ptr<const grammar::Vocabulary> vocab = [] {
    auto tok = Tokenizer::FromDir(testing::TinyModelDir());
    EXPECT_TRUE(tok.ok()) << tok.status();
    std::vector<std::string> bytes;
    for (int32_t id = 0; id < (*tok)->vocab_size(); ++id) bytes.push_back((*tok)->TokenBytes(id));
    return std::make_shared<const grammar::Vocabulary>(std::move(bytes),
                                                       TinyModel()->config().eos_token_ids);
  }();
  return vocab;
}

std::string TextOf(const std::vector<int32_t>& ids) {
  std::string text;
  for (int32_t id : ids) text += TinyVocabulary()->bytes(id);
  return text;
}

// A JSON Schema constraint on the real model: every output parses and has the schema's
// shape, stops by the grammar (not by length), and equals itself run alone when the
// batch is preempted (the matcher replays the output it had).
TEST(EngineModelTest, ConstrainedOutputsFollowTheSchemaUnderPreemption) {
  const std::string schema = R"({"type":"object","properties":{
      "name":{"type":"string","maxLength":12},"count":{"type":"integer","minimum":0,"maximum":99},
      "ok":{"type":"boolean"}},"required":["name","count","ok"]})";
  auto g = grammar::CompileJsonSchema(schema);
  ASSERT_TRUE(g.ok()) << g.status();
  auto constraint = std::make_shared<OutputConstraint>(OutputConstraint{*g, TinyVocabulary()});
  const auto golden = testing::ReadJsonOrDie(testing::SharedDir() + "/fixtures/golden_tiny.json");
  auto request = [&](const nlohmann::json& c, float temperature, uint64_t seed) {
    SubmitParams p = Greedy(c["prompt_ids"].get<std::vector<int32_t>>(), 96);
    p.sampling.ignore_eos = false;
    p.sampling.temperature = temperature;
    p.sampling.seed = seed;
    p.sampling.constraint = constraint;
    return p;
  };
  std::vector<SubmitParams> reqs;
  for (const auto& c : golden["cases"]) {
    reqs.push_back(request(c, 0.0f, 1));
    reqs.push_back(request(c, 1.0f, 7));
  }
  auto run = [&](int num_blocks, int max_seqs) {
    auto engine = MakeEngine(num_blocks, 8, max_seqs, 64);
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (const SubmitParams& p : reqs) streams.push_back(*engine->Submit(p));
    std::vector<Result> out;
    for (auto& s : streams) out.push_back(Wait(*s));
    return std::make_pair(std::move(out), engine->Stats().num_preemptions);
  };
  const auto [alone, unused] = run(256, 1);
  const auto [together, preemptions] = run(20, 16);
  EXPECT_GT(preemptions, 0);
  int stopped = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const std::string text = TextOf(alone[i].ids);
    EXPECT_EQ(together[i].ids, alone[i].ids) << "request " << i;
    if (alone[i].reason != FinishReason::kStop) continue;  // cut by max_tokens
    ++stopped;
    const auto parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(parsed.is_discarded()) << text;
    EXPECT_TRUE(parsed["name"].is_string() && parsed["name"].get<std::string>().size() <= 12)
        << text;
    EXPECT_TRUE(parsed["count"].is_number_integer() && parsed["count"] >= 0 &&
                parsed["count"] <= 99)
        << text;
    EXPECT_TRUE(parsed["ok"].is_boolean()) << text;
    EXPECT_EQ(parsed.size(), 3u) << text;
  }
  std::printf("CONSTRAINED %d/%zu stopped by the grammar; e.g. %s | %s\n", stopped, reqs.size(),
              TextOf(alone[0].ids).c_str(), TextOf(alone[1].ids).c_str());
  EXPECT_GE(stopped, static_cast<int>(reqs.size()) * 3 / 4);
}

// ---- Speculative decoding ----

// The tiny model's golden prompts, each as a prompt.
std::vector<std::vector<int32_t>> GoldenPrompts() {
  const auto golden = testing::ReadJsonOrDie(testing::SharedDir() + "/fixtures/golden_tiny.json");
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& c : golden["cases"])
    prompts.push_back(c["prompt_ids"].get<std::vector<int32_t>>());
  return prompts;
}

// A prompt that repeats itself (code written twice and the start of a third copy):
// where n-gram drafts hit.
std::vector<int32_t> RepetitivePrompt() {
  const std::vector<int32_t> p = GoldenPrompts().front();
  std::vector<int32_t> r = p;
  r.insert(r.end(), p.begin(), p.end());
  r.insert(r.end(), p.begin(), p.begin() + static_cast<ptrdiff_t>(p.size() / 2));
  return r;
}

std::vector<Result> RunAll(Engine& engine, const std::vector<SubmitParams>& reqs) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const SubmitParams& p : reqs) {
    auto s = engine.Submit(p);
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) streams.push_back(*s);
  }
  std::vector<Result> out;
  for (auto& s : streams) out.push_back(Wait(*s));
  return out;
}

void ExpectDraftsKept(const Engine& engine) {
  const EngineStats st = engine.Stats();
  EXPECT_GT(st.spec_num_drafts, 0);
  EXPECT_GT(st.spec_num_accepted_tokens, 0);
  EXPECT_LE(st.spec_num_accepted_tokens, st.spec_num_draft_tokens);
  std::printf("SPEC %lld verifications, %lld of %lld drafts kept\n",
              static_cast<long long>(st.spec_num_drafts),
              static_cast<long long>(st.spec_num_accepted_tokens),
              static_cast<long long>(st.spec_num_draft_tokens));
}

// Greedy with n-gram drafts gives transformers' ids, alone, batched and under
// preemption (rejected drafts' slots are reused, kept ones cached).
TEST(EngineModelTest, NgramDraftsKeepTheGoldenGreedyIds) {
  auto engine = MakeNgramEngine(256, 8, 8, 256);
  ExpectGoldenIdsUnderPreemption(*MakeNgramEngine(12, 8, 8, 64));
  const auto golden = testing::ReadJsonOrDie(testing::SharedDir() + "/fixtures/golden_tiny.json");
  for (const auto& c : golden["cases"]) {
    auto s = engine->Submit(Greedy(c["prompt_ids"].get<std::vector<int32_t>>(), 32));
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(Wait(**s).ids, c["greedy_ids"].get<std::vector<int32_t>>());
  }
  ExpectDraftsKept(*engine);
  EXPECT_TRUE(engine->WaitIdle(5s));
  EXPECT_EQ(engine->Stats().num_runner_requests, 0);
}

// Seeded sampling, penalties, logprobs and stop tokens with drafts: the tokens of plain
// decoding, because every token is drawn as plain decoding draws it. Rows scored with
// drafts round differently (as any change of batch shape does, by ~1e-5 in log-probability),
// so a sampled draw that lands that close to a boundary may differ: a few sampled requests
// may part, greedy ones never.
TEST(EngineModelTest, NgramDraftsDrawThePlainTokensWhenSampling) {
  std::vector<SubmitParams> reqs;
  for (uint64_t seed = 0; seed < 48; ++seed) {
    SubmitParams p = Greedy(RepetitivePrompt(), 24);
    p.sampling.temperature = seed % 3 == 0 ? 0.0f : 0.8f;
    p.sampling.top_p = 0.95f;
    p.sampling.seed = seed;
    p.sampling.logprobs = 2;
    if (seed % 4 == 1) p.sampling.repetition_penalty = 1.2f;
    if (seed % 5 == 2) p.sampling.presence_penalty = 0.5f;
    if (seed % 7 == 3) p.sampling.ignore_eos = false, p.sampling.stop_token_ids = {313, 14};
    reqs.push_back(std::move(p));
  }
  auto plain = MakeEngine(512, 8, 16, 256);
  auto spec = MakeNgramEngine(512, 8, 16, 256);
  const std::vector<Result> want = RunAll(*plain, reqs);
  const std::vector<Result> got = RunAll(*spec, reqs);
  int same = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    same += got[i].ids == want[i].ids;
    if (reqs[i].sampling.temperature == 0.0f) {
      EXPECT_EQ(got[i].ids, want[i].ids) << "greedy, seed " << i;
      EXPECT_EQ(got[i].reason, want[i].reason) << "greedy, seed " << i;
    }
  }
  std::printf("SAME %d of %zu requests\n", same, reqs.size());
  EXPECT_GE(same, static_cast<int>(reqs.size()) - 3);
  ExpectDraftsKept(*spec);
}

// The upper tail of chi-square with `dof` degrees of freedom at x (Wilson-Hilferty).
double ChiSquareTail(double x, int dof) {
  const double k = dof, z = (std::cbrt(x / k) - (1 - 2 / (9 * k))) / std::sqrt(2 / (9 * k));
  return 0.5 * std::erfc(z / std::sqrt(2.0));
}

// Two independent samples of the 4th token, one with drafts and one without (different
// seeds), come from one distribution: chi-square homogeneity over the tokens seen.
TEST(EngineModelTest, NgramDraftsKeepTheSamplingDistribution) {
  constexpr int kSamples = 300;
  auto sample = [&](Engine& engine, uint64_t first_seed) {
    std::vector<SubmitParams> reqs;
    for (int i = 0; i < kSamples; ++i) {
      SubmitParams p = Greedy(RepetitivePrompt(), 4);
      p.sampling.temperature = 1.5f;
      p.sampling.seed = first_seed + static_cast<uint64_t>(i);
      reqs.push_back(std::move(p));
    }
    std::map<int32_t, int> counts;
    for (const Result& r : RunAll(engine, reqs)) {
      EXPECT_EQ(r.ids.size(), 4u);
      if (r.ids.size() == 4) ++counts[r.ids[3]];
    }
    return counts;
  };
  auto plain = MakeEngine(4096, 8, 64, 2048);
  auto spec = MakeNgramEngine(4096, 8, 64, 2048);
  std::map<int32_t, int> a = sample(*plain, 0), b = sample(*spec, 1000000);
  ExpectDraftsKept(*spec);
  // Tokens seen fewer than 10 times in all are pooled into one category.
  std::map<int32_t, std::pair<int, int>> cells;
  for (auto [t, n] : a) cells[t].first += n;
  for (auto [t, n] : b) cells[t].second += n;
  std::vector<std::pair<int, int>> table(1, {0, 0});
  for (auto [t, c] : cells) {
    if (c.first + c.second < 10) {
      table[0].first += c.first, table[0].second += c.second;
    } else {
      table.push_back(c);
    }
  }
  if (table[0].first + table[0].second == 0) table.erase(table.begin());
  ASSERT_GE(table.size(), 4u) << "the 4th token should vary at temperature 1.5";
  double chi2 = 0;
  for (auto [x, y] : table) {
    const double expected = (x + y) / 2.0;  // equal sample sizes
    chi2 += (x - expected) * (x - expected) / expected + (y - expected) * (y - expected) / expected;
  }
  const int dof = static_cast<int>(table.size()) - 1;
  const double p = ChiSquareTail(chi2, dof);
  std::printf("CHI2 %.2f over %d degrees of freedom, p = %.3f\n", chi2, dof, p);
  EXPECT_GT(p, 1e-3);
}

// A grammar's masks follow the kept drafts: constrained outputs are the same with drafts.
TEST(EngineModelTest, NgramDraftsUnderAGrammarGiveThePlainOutputs) {
  auto g = grammar::CompileJsonSchema(
      R"({"type":"object","properties":{"name":{"type":"string","maxLength":16},
          "tags":{"type":"array","items":{"type":"string","maxLength":6},"maxItems":4}},
          "required":["name","tags"]})");
  ASSERT_TRUE(g.ok()) << g.status();
  auto constraint = std::make_shared<OutputConstraint>(OutputConstraint{*g, TinyVocabulary()});
  std::vector<SubmitParams> reqs;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    SubmitParams p = Greedy(RepetitivePrompt(), 64);
    p.sampling.ignore_eos = false;
    p.sampling.temperature = seed < 4 ? 0.0f : 1.0f;
    p.sampling.seed = seed;
    p.sampling.constraint = constraint;
    reqs.push_back(std::move(p));
  }
  auto plain = MakeEngine(512, 8, 8, 256);
  auto spec = MakeNgramEngine(512, 8, 8, 256);
  const std::vector<Result> want = RunAll(*plain, reqs);
  const std::vector<Result> got = RunAll(*spec, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(got[i].ids, want[i].ids) << "request " << i << ": " << TextOf(want[i].ids);
  }
  EXPECT_GT(spec->Stats().spec_num_drafts, 0);
}

// A request that opts out gets no drafts; the others still do.
TEST(EngineModelTest, ARequestCanOptOutOfDrafts) {
  auto engine = MakeNgramEngine(256, 8, 8, 256);
  SubmitParams p = Greedy(RepetitivePrompt(), 32);
  p.sampling.speculative = false;
  auto s = engine->Submit(p);
  ASSERT_TRUE(s.ok());
  Wait(**s);
  EXPECT_EQ(engine->Stats().spec_num_drafts, 0);
  p.sampling.speculative = true;
  s = engine->Submit(p);
  ASSERT_TRUE(s.ok());
  Wait(**s);
  EXPECT_GT(engine->Stats().spec_num_drafts, 0);
}

// The model drafting for itself from its own cache: nearly every draft is kept, so the
// draft's KV follows the requests across steps, rejections and preemptions.
TEST(EngineModelTest, ADraftModelOfTheSameWeightsIsAlmostAlwaysRight) {
  auto run = [](int num_blocks, int max_seqs, int budget) {
    Speculation spec;
    spec.proposer =
        std::make_unique<DraftModelProposer>(std::make_unique<CpuModelGroup>(TinyModel(), 256, 8));
    spec.k = 3;
    return EngineOver(std::make_unique<CpuModelGroup>(TinyModel(), num_blocks, 8), max_seqs, budget,
                      std::move(spec));
  };
  auto engine = run(256, 8, 256);
  const auto golden = testing::ReadJsonOrDie(testing::SharedDir() + "/fixtures/golden_tiny.json");
  for (const auto& c : golden["cases"]) {
    auto s = engine->Submit(Greedy(c["prompt_ids"].get<std::vector<int32_t>>(), 32));
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(Wait(**s).ids, c["greedy_ids"].get<std::vector<int32_t>>());
  }
  const EngineStats st = engine->Stats();
  ExpectDraftsKept(*engine);
  EXPECT_GT(static_cast<double>(st.spec_num_accepted_tokens), 0.9 * st.spec_num_draft_tokens);
  ExpectGoldenIdsUnderPreemption(*run(12, 8, 64));
}

// The tiny model drafting for a larger random-weight Llama of its vocabulary: most
// drafts miss, and the greedy output is the target's own.
TEST(EngineModelTest, ATinyDraftModelLeavesALargerModelsGreedyOutputAlone) {
  const std::string dir = ::testing::TempDir() + "/spec_larger_llama";
  std::filesystem::create_directories(dir);
  nlohmann::json config = testing::ReadJsonOrDie(testing::TinyModelDir() + "/config.json");
  config["hidden_size"] = 384;
  config["intermediate_size"] = 1024;
  config["num_hidden_layers"] = 6;
  config["num_attention_heads"] = 6;
  std::ofstream(dir + "/config.json") << config.dump();
  auto target = CpuModel::LoadRandom(dir, 5);
  ASSERT_TRUE(target.ok()) << target.status();
  std::shared_ptr<CpuModel> larger(std::move(*target));
  std::vector<SubmitParams> reqs;
  for (const auto& p : GoldenPrompts()) reqs.push_back(Greedy(p, 24));
  reqs.push_back(Greedy(RepetitivePrompt(), 24));
  auto plain = MakeEngineFor(larger, 512, 8, 8, 256);
  Speculation spec;
  spec.proposer =
      std::make_unique<DraftModelProposer>(std::make_unique<CpuModelGroup>(TinyModel(), 512, 8));
  auto drafted =
      EngineOver(std::make_unique<CpuModelGroup>(larger, 512, 8), 8, 256, std::move(spec));
  const std::vector<Result> want = RunAll(*plain, reqs);
  const std::vector<Result> got = RunAll(*drafted, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(got[i].ids, want[i].ids) << "prompt " << i;
  EXPECT_GT(drafted->Stats().spec_num_drafts, 0);
}

}  // namespace
}  // namespace sluice
