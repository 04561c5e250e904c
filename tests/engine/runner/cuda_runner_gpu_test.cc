// The engine on the CUDA runner (bf16): greedy parity with transformers on the tiny model
// and the variants (dense, mixture-of-experts, gpt-oss), the same output alone and in a full batch,
// graphs and eager mode agreeing, the random model equal on both backends. Prints one PARITY line
// per model. Exits 77 (ctest SKIP) where no GPU is usable.
#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/api.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"
#include "engine/model/cpu_model.h"
#include "engine/runner/cpu_runner.h"
#include "engine/runner/cuda_runner.h"
#include "gtest/gtest.h"
#include "server/tokenizer/tokenizer.h"
#include "tests/common/cuda_device.h"
#include "tests/common/fixtures.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using testing::ReadJsonOrDie;
using testing::SharedDir;
using testing::TinyModelDir;

std::unique_ptr<Engine> MakeEngine(std::unique_ptr<Runner> runner, const ModelConfig& c,
                                   int max_seqs) {
  EngineConfig ec;
  ec.max_num_seqs = max_seqs;
  ec.max_num_batched_tokens = 512;
  ec.max_model_len = c.max_position_embeddings;
  ec.eos_token_ids = c.eos_token_ids;
  ec.max_waiting_requests = 1000;
  auto engine = Engine::Create(ec, std::move(runner));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(*engine) : nullptr;
}

std::unique_ptr<Engine> CudaEngine(const std::string& dir, int max_seqs, bool eager,
                                   bool random = false, bool nccl = false) {
  CudaRunnerOptions o;
  o.nccl_one_rank = nccl;
  o.model_dir = dir;
  o.random_weights = random;
  o.seed = 11;
  o.num_kv_blocks = 1024;
  o.block_size = 16;
  o.max_num_seqs = max_seqs;
  o.max_num_batched_tokens = 512;
  o.enforce_eager = eager;
  o.gpu_memory_utilization = 0.5;
  auto runner = CreateCudaRunner(o);
  EXPECT_TRUE(runner.ok()) << runner.status();
  if (!runner.ok()) return nullptr;
  auto config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok());
  return MakeEngine(std::move(*runner), *config, max_seqs);
}

struct Output {
  std::vector<int32_t> ids;
  std::vector<TokenLogprobs> logprobs;
};

SubmitParams Greedy(const std::vector<int32_t>& prompt, int max_tokens, int logprobs = -1) {
  SubmitParams p;
  p.prompt_ids = prompt;
  p.sampling.temperature = 0.0f;
  p.sampling.max_tokens = max_tokens;
  p.sampling.ignore_eos = true;
  p.sampling.logprobs = logprobs;
  return p;
}

Output Collect(RequestStream& s) {
  Output out;
  for (;;) {
    auto o = s.Pop(120s);
    if (!o) {
      ADD_FAILURE() << "request timed out";
      return out;
    }
    out.ids.insert(out.ids.end(), o->new_token_ids.begin(), o->new_token_ids.end());
    out.logprobs.insert(out.logprobs.end(), o->logprobs.begin(), o->logprobs.end());
    if (o->finish_reason != FinishReason::kNone) {
      EXPECT_NE(o->finish_reason, FinishReason::kError);
      return out;
    }
  }
}

// Submits all at once; outputs in submission order.
std::vector<Output> RunAll(Engine& e, const std::vector<SubmitParams>& reqs) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const SubmitParams& p : reqs) {
    auto s = e.Submit(p);
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) streams.push_back(*s);
  }
  std::vector<Output> outs;
  for (auto& s : streams) outs.push_back(Collect(*s));
  return outs;
}

// Reference top-2 margin at `step` of a golden case.
float Margin(const nlohmann::json& c, size_t step) {
  const auto& top = c["greedy_top5"][step];
  return top[0][1].get<float>() - top[1][1].get<float>();
}

// bf16 against transformers' fp32:
// - identical greedy tokens, teacher-forced (each step continues the reference's own
//   tokens, so one flip does not derail the rest): at least 90%;
// - free-running, the first divergence only where the reference's top-2 margin is
//   below 0.05;
// - the last prompt position's log-probabilities over the whole vocabulary: reported,
//   and far from a wrong model (a broken layer moves them by whole units).
void CheckParity(const std::string& name, const std::string& dir, const std::string& golden_path) {
  auto engine = CudaEngine(dir, 16, false);
  ASSERT_NE(engine, nullptr);
  const nlohmann::json golden = ReadJsonOrDie(golden_path);
  int identical = 0, total = 0, free_agree = 0;
  float max_diff = 0.0f;
  for (const auto& c : golden["cases"]) {
    const auto prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    const auto want = c["greedy_ids"].get<std::vector<int32_t>>();
    const auto last = c["last_logits"].get<std::vector<float>>();
    const int vocab = static_cast<int>(last.size());
    // Step 0 with every token's logprob: compared with the reference's log-softmax.
    Output first = RunAll(*engine, {Greedy(prompt, 1, vocab)})[0];
    ASSERT_EQ(first.logprobs.size(), 1u);
    double max_logit = last[0], sum = 0;
    for (float x : last) max_logit = std::max<double>(max_logit, x);
    for (float x : last) sum += std::exp(x - max_logit);
    const double log_z = max_logit + std::log(sum);
    ASSERT_EQ(first.logprobs[0].top.size(), static_cast<size_t>(vocab));
    for (const auto& [id, lp] : first.logprobs[0].top) {
      max_diff = std::max(max_diff, static_cast<float>(std::abs(lp - (last[id] - log_z))));
    }
    // Teacher-forced: one request per step, all in one batch.
    std::vector<SubmitParams> steps;
    for (size_t i = 0; i < want.size(); ++i) {
      std::vector<int32_t> p = prompt;
      p.insert(p.end(), want.begin(), want.begin() + static_cast<std::ptrdiff_t>(i));
      steps.push_back(Greedy(p, 1));
    }
    const std::vector<Output> forced = RunAll(*engine, steps);
    for (size_t i = 0; i < want.size(); ++i) {
      const bool same = forced[i].ids.size() == 1 && forced[i].ids[0] == want[i];
      identical += same;
      if (!same) {
        std::printf("  %s: teacher-forced step %zu differs (reference margin %.4f)\n", name.c_str(),
                    i, Margin(c, i));
      }
    }
    total += static_cast<int>(want.size());
    // Free-running.
    Output got = RunAll(*engine, {Greedy(prompt, static_cast<int>(want.size()))})[0];
    ASSERT_EQ(got.ids.size(), want.size());
    size_t agree = 0;
    while (agree < want.size() && got.ids[agree] == want[agree]) ++agree;
    free_agree += static_cast<int>(agree);
    if (agree < want.size()) {
      EXPECT_LT(Margin(c, agree), 0.05f)
          << name << " '" << c["prompt"].get<std::string>() << "' diverges at step " << agree
          << " where the reference's top-2 margin is " << Margin(c, agree);
    }
  }
  const double fraction = total > 0 ? static_cast<double>(identical) / total : 0;
  std::printf(
      "PARITY %s: identical greedy tokens %d/%d (%.1f%%) teacher-forced, free-running prefix "
      "%d/%d; max |d last logprob| %.4f\n",
      name.c_str(), identical, total, 100 * fraction, free_agree, total, max_diff);
  EXPECT_GE(fraction, 0.90);
  EXPECT_LT(max_diff, 1.0f);
}

TEST(CudaRunnerTest, TinyModelGreedyParity) {
  CheckParity("sluice-tiny-code", TinyModelDir(), SharedDir() + "/fixtures/golden_tiny.json");
}

TEST(CudaRunnerTest, Llama3RopeUntiedParity) {
  const std::string dir = SharedDir() + "/fixtures/variants/llama3-rope-untied";
  CheckParity("llama3-rope-untied", dir, dir + "/golden.json");
}

// Qwen3's per-head QK-norm in the fused split/RoPE kernel.
TEST(CudaRunnerTest, Qwen3DenseParity) {
  const std::string dir = SharedDir() + "/fixtures/variants/qwen3-dense";
  CheckParity("qwen3-dense", dir, dir + "/golden.json");
}

// The fused MoE (softmax then top-k, renormalized) behind the router GEMM.
TEST(CudaRunnerTest, Qwen3MoeParity) {
  const std::string dir = SharedDir() + "/fixtures/variants/qwen3-moe";
  CheckParity("qwen3-moe", dir, dir + "/golden.json");
}

// Top-k then softmax with router and expert biases, the clamped SwiGLU, the output
// projection's bias, sinks, and windowed layers between full ones (two attention plans a
// step); the 196-token prompt crosses the 16-token window.
TEST(CudaRunnerTest, GptOssParity) {
  const std::string dir = SharedDir() + "/fixtures/variants/gpt-oss";
  CheckParity("gpt-oss", dir, dir + "/golden.json");
}

TEST(CudaRunnerTest, Qwen2BiasTiedParity) {
  const std::string dir = SharedDir() + "/fixtures/variants/qwen2-bias-tied";
  CheckParity("qwen2-bias-tied", dir, dir + "/golden.json");
}

// Where two greedy runs of one prompt part, the run's own top-2 margin there.
float OwnMargin(const Output& o, size_t step) {
  if (step >= o.logprobs.size() || o.logprobs[step].top.size() < 2) return 0.0f;
  return o.logprobs[step].top[0].second - o.logprobs[step].top[1].second;
}

// `a` and `b` identical, or parting only where `a` itself nearly tied (bf16 GEMMs of other
// batch sizes sum in another order). Returns whether identical.
bool SameOrNearTie(const Output& a, const Output& b, const std::string& what) {
  if (a.ids == b.ids) return true;
  size_t i = 0;
  while (i < a.ids.size() && i < b.ids.size() && a.ids[i] == b.ids[i]) ++i;
  const float margin = OwnMargin(a, i);
  std::printf("  %s: parts at step %zu (own top-2 logprob margin %.4f)\n", what.c_str(), i, margin);
  EXPECT_LT(margin, 0.05f) << what << " parts at step " << i;
  return false;
}

// Each golden prompt alone, then all of them in one full batch with filler requests:
// greedy ids identical (or parting only at a near-tie), in graphs and in eager mode.
TEST(CudaRunnerTest, SameOutputAloneAndInAFullBatch) {
  const nlohmann::json golden = ReadJsonOrDie(SharedDir() + "/fixtures/golden_tiny.json");
  std::vector<SubmitParams> reqs;
  for (const auto& c : golden["cases"]) {
    reqs.push_back(Greedy(c["prompt_ids"].get<std::vector<int32_t>>(), 48, 2));
  }
  const size_t num_golden = reqs.size();
  for (int i = 0; reqs.size() < 32; ++i) {
    std::vector<int32_t> filler(20 + 7 * i);
    for (size_t j = 0; j < filler.size(); ++j) filler[j] = 100 + (i * 31 + j * 17) % 3000;
    reqs.push_back(Greedy(filler, 48));
  }
  auto engine = CudaEngine(TinyModelDir(), 32, false);
  ASSERT_NE(engine, nullptr);
  std::vector<Output> alone;
  for (size_t i = 0; i < num_golden; ++i) alone.push_back(RunAll(*engine, {reqs[i]})[0]);
  const std::vector<Output> batch = RunAll(*engine, reqs);
  int same = 0;
  for (size_t i = 0; i < num_golden; ++i) {
    same += SameOrNearTie(alone[i], batch[i], "prompt " + std::to_string(i) + " in a batch");
  }
  auto eager = CudaEngine(TinyModelDir(), 32, true);
  ASSERT_NE(eager, nullptr);
  const std::vector<Output> eager_batch = RunAll(*eager, reqs);
  int same_eager = 0;
  for (size_t i = 0; i < num_golden; ++i) {
    same_eager += SameOrNearTie(alone[i], eager_batch[i], "prompt " + std::to_string(i) + " eager");
  }
  std::printf(
      "BATCH alone vs a batch of %zu: %d/%zu identical; eager batch vs graphs alone: "
      "%d/%zu\n",
      reqs.size(), same, num_golden, same_eager, num_golden);
}

// The tensor-parallel path at one rank (the layers' all-reduces through NCCL, inside the
// decode graphs) gives the single-device runner's outputs bit for bit.
TEST(CudaRunnerTest, NcclPathAtOneRankEqualsTheSingleDevice) {
  const auto golden = ReadJsonOrDie(SharedDir() + "/fixtures/golden_tiny.json");
  std::vector<SubmitParams> reqs;
  for (const auto& c : golden["cases"]) {
    reqs.push_back(Greedy(c["prompt_ids"].get<std::vector<int32_t>>(), 32, 2));
  }
  auto single = CudaEngine(TinyModelDir(), 16, false);
  auto nccl = CudaEngine(TinyModelDir(), 16, false, false, /*nccl=*/true);
  ASSERT_NE(single, nullptr);
  ASSERT_NE(nccl, nullptr);
  const std::vector<Output> a = RunAll(*single, reqs), b = RunAll(*nccl, reqs);
  int same = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(a[i].ids, b[i].ids) << "prompt " << i;
    same += a[i].ids == b[i].ids;
  }
  std::printf("NCCL one rank vs single device: %d/%zu identical\n", same, reqs.size());
}

// --random-weights draws the same bf16 model on both backends.
TEST(CudaRunnerTest, RandomWeightsMatchTheCpuBackend) {
  auto cpu_model = CpuModel::LoadRandom(TinyModelDir(), 11);
  ASSERT_TRUE(cpu_model.ok()) << cpu_model.status();
  const ModelConfig config = (*cpu_model)->config();
  auto cpu = MakeEngine(std::make_unique<CpuRunner>(std::move(*cpu_model), 1024, 16), config, 4);
  auto gpu = CudaEngine(TinyModelDir(), 4, false, /*random=*/true);
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(gpu, nullptr);
  const std::vector<int32_t> prompt = {1, 300, 301, 302, 900, 1200, 77, 5};
  const Output a = RunAll(*cpu, {Greedy(prompt, 1, config.vocab_size)})[0];
  const Output b = RunAll(*gpu, {Greedy(prompt, 1, config.vocab_size)})[0];
  ASSERT_EQ(a.logprobs.size(), 1u);
  ASSERT_EQ(b.logprobs.size(), 1u);
  std::vector<float> cpu_lp(config.vocab_size), gpu_lp(config.vocab_size);
  for (const auto& [id, lp] : a.logprobs[0].top) cpu_lp[id] = lp;
  for (const auto& [id, lp] : b.logprobs[0].top) gpu_lp[id] = lp;
  float max_diff = 0;
  for (int i = 0; i < config.vocab_size; ++i) {
    max_diff = std::max(max_diff, std::abs(cpu_lp[i] - gpu_lp[i]));
  }
  std::printf("RANDOM tiny shape, seed 11: max |d logprob| cpu (fp32) vs cuda (bf16) %.4f\n",
              max_diff);
  EXPECT_LT(max_diff, 1.0f);
}

// Prompt logprobs on the device (the final norm and LM head over the step's hidden
// states, max_seqs rows at a time) against the CPU backend's, on a prompt of two chunks.
TEST(CudaRunnerTest, PromptLogprobsMatchTheCpuBackend) {
  auto cpu_model = CpuModel::LoadRandom(TinyModelDir(), 11);
  ASSERT_TRUE(cpu_model.ok()) << cpu_model.status();
  const ModelConfig config = (*cpu_model)->config();
  auto cpu = MakeEngine(std::make_unique<CpuRunner>(std::move(*cpu_model), 1024, 16), config, 4);
  auto gpu = CudaEngine(TinyModelDir(), 4, false, /*random=*/true);
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(gpu, nullptr);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 700; ++i) prompt.push_back(5 + (i * 37) % 4000);  // 2 chunks of <= 512
  SubmitParams p = Greedy(prompt, 0);
  p.sampling.prompt_logprobs = 3;
  auto scores = [&](Engine& e) {
    auto s = e.Submit(p);
    EXPECT_TRUE(s.ok()) << s.status();
    auto o = s.ok() ? (*s)->Pop(120s) : std::nullopt;
    EXPECT_TRUE(o.has_value());
    return o ? o->prompt_logprobs : std::vector<TokenLogprobs>{};
  };
  const std::vector<TokenLogprobs> a = scores(*cpu), b = scores(*gpu);
  ASSERT_EQ(a.size(), prompt.size() - 1);
  ASSERT_EQ(b.size(), prompt.size() - 1);
  float max_diff = 0;
  size_t same_top = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(a[i].logprob - b[i].logprob));
    same_top += !a[i].top.empty() && !b[i].top.empty() && a[i].top[0].first == b[i].top[0].first;
  }
  std::printf(
      "PROMPT_LOGPROBS 699 scores: max |d logprob| cpu (fp32) vs cuda (bf16) %.4f, "
      "same top token %zu/%zu\n",
      max_diff, same_top, a.size());
  EXPECT_LT(max_diff, 1.0f);
  EXPECT_GE(same_top * 10, a.size() * 9);
}

// Structured outputs on the device: the grammars' masks (filled on the host while the
// layers run, applied by the bitmask kernel before sampling) in a decode-graph batch that
// mixes constrained and free rows. Constrained outputs parse and have the schema's
// shape; free rows are the same as when they run with no constrained neighbour.
TEST(CudaRunnerTest, ConstrainedRowsFollowTheirGrammarAndLeaveOthersAlone) {
  auto tok = Tokenizer::FromDir(TinyModelDir());
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto config = LoadModelConfig(TinyModelDir());
  ASSERT_TRUE(config.ok());
  std::vector<std::string> bytes;
  for (int32_t id = 0; id < (*tok)->vocab_size(); ++id) bytes.push_back((*tok)->TokenBytes(id));
  auto vocab = std::make_shared<const grammar::Vocabulary>(std::move(bytes), config->eos_token_ids);
  auto g = grammar::CompileJsonSchema(R"({"type":"object","properties":{
      "name":{"type":"string","maxLength":12},"count":{"type":"integer","minimum":0,"maximum":99}},
      "required":["name","count"]})");
  ASSERT_TRUE(g.ok()) << g.status();
  auto constraint = std::make_shared<OutputConstraint>(
      OutputConstraint{*g, vocab, std::make_shared<grammar::Automaton>(*g, vocab)});
  const nlohmann::json golden = ReadJsonOrDie(SharedDir() + "/fixtures/golden_tiny.json");
  std::vector<SubmitParams> free_rows, mixed;
  int i = 0;
  for (const auto& c : golden["cases"]) {
    SubmitParams p = Greedy(c["prompt_ids"].get<std::vector<int32_t>>(), 64);
    free_rows.push_back(p);
    mixed.push_back(p);
    SubmitParams q = p;
    q.sampling.ignore_eos = false;
    q.sampling.constraint = constraint;
    q.sampling.temperature = i % 2 ? 0.8f : 0.0f;
    q.sampling.seed = 3 + i++;
    mixed.push_back(q);
  }
  auto engine = CudaEngine(TinyModelDir(), 16, false);
  ASSERT_NE(engine, nullptr);
  const std::vector<Output> alone = RunAll(*engine, free_rows);
  const std::vector<Output> together = RunAll(*engine, mixed);
  int parsed_ok = 0;
  for (size_t k = 0; k < free_rows.size(); ++k) {
    EXPECT_EQ(together[2 * k].ids, alone[k].ids) << "free row " << k << " changed";
    std::string text;
    for (int32_t id : together[2 * k + 1].ids) {
      if (id < static_cast<int32_t>(vocab->size())) text += vocab->bytes(id);
    }
    const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    const bool ok = !j.is_discarded() && j.is_object() && j.size() == 2 && j["name"].is_string() &&
                    j["name"].get<std::string>().size() <= 12 && j["count"].is_number_integer() &&
                    j["count"] >= 0 && j["count"] <= 99;
    EXPECT_TRUE(ok || together[2 * k + 1].ids.size() == 64u) << text;
    parsed_ok += ok;
  }
  std::printf("CONSTRAINED_CUDA %d/%zu outputs follow the schema\n", parsed_ok, free_rows.size());
  EXPECT_GE(parsed_ok * 4, static_cast<int>(free_rows.size()) * 3);
}

TEST(CudaRunnerTest, ModelThatDoesNotFitIsRefusedWithNumbers) {
  CudaRunnerOptions o;
  o.model_dir = TinyModelDir();
  o.gpu_memory_utilization = 0.0001;
  auto runner = CreateCudaRunner(o);
  ASSERT_FALSE(runner.ok());
  EXPECT_EQ(runner.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(std::string(runner.status().message()).find("--gpu-memory-utilization"),
            std::string::npos)
      << runner.status();
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  if (sluice::testing::NoCudaDevice()) return 77;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
