// Parity with Hugging Face transformers: prompt ids, greedy ids and logits of the tiny
// model and of the architecture variants, against ../shared/fixtures.
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/model/cpu_model.h"
#include "engine/model/generate.h"
#include "gtest/gtest.h"
#include "server/tokenizer/tokenizer.h"
#include "sluice/kernels/thread_pool.h"
#include "tests/common/fixtures.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using testing::ReadJsonOrDie;
using testing::SharedDir;
using testing::TinyModelDir;

constexpr float kLogitTolerance = 1e-3f;

struct GoldenModel {
  std::string name;
  std::string model_dir;    // weights and config.json
  std::string golden_path;  // golden json
};

// Runs every case of a golden file against a model directory, its GEMMs and attention
// split over `threads` threads.
void CheckGolden(const std::string& model_dir, const std::string& golden_path, int threads = 1) {
  auto tokenizer = Tokenizer::FromDir(TinyModelDir());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto model = CpuModel::Load(model_dir);
  ASSERT_TRUE(model.ok()) << model.status();
  if (threads > 1) (*model)->SetThreadPool(std::make_shared<kernels::ThreadPool>(threads));
  const nlohmann::json golden = ReadJsonOrDie(golden_path);
  ASSERT_FALSE(golden["cases"].empty());
  for (const auto& c : golden["cases"]) {
    SCOPED_TRACE(c["prompt"].get<std::string>());
    auto ids = (*tokenizer)->Encode(c["prompt"].get<std::string>(), true);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, c["prompt_ids"].get<std::vector<int32_t>>());

    const auto want_ids = c["greedy_ids"].get<std::vector<int32_t>>();
    const auto want_last = c["last_logits"].get<std::vector<float>>();
    const auto& want_top5 = c["greedy_top5"];
    GenerateOptions opts;
    opts.max_tokens = static_cast<int>(want_ids.size());
    opts.ignore_eos = true;
    float max_err = 0.0f;
    auto result = Generate(**model, c["prompt_ids"].get<std::vector<int32_t>>(), opts, nullptr,
                           [&](int step, std::span<const float> logits) {
                             if (step == 0) {
                               ASSERT_EQ(logits.size(), want_last.size());
                               for (size_t i = 0; i < logits.size(); ++i) {
                                 max_err = std::max(max_err, std::abs(logits[i] - want_last[i]));
                               }
                             }
                             for (const auto& pair : want_top5[step]) {
                               const int id = pair[0].get<int>();
                               EXPECT_NEAR(logits[id], pair[1].get<float>(), kLogitTolerance)
                                   << "step " << step << " token " << id;
                             }
                           });
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->output_ids, want_ids);
    EXPECT_LT(max_err, kLogitTolerance);
  }
}

TEST(GoldenTest, TinyModelMatchesTransformers) {
  CheckGolden(TinyModelDir(), SharedDir() + "/fixtures/golden_tiny.json");
}

TEST(GoldenTest, TinyModelMatchesTransformersOnThreeThreads) {
  CheckGolden(TinyModelDir(), SharedDir() + "/fixtures/golden_tiny.json", 3);
}

// The threads split the GEMMs' columns, which may change how the BLAS kernel blocks a
// sum, so the logits agree to float32 rounding on any thread count (attention's are the
// same bits, kernels_cpu_test).
TEST(GoldenTest, LogitsHardlyDependOnTheThreadCount) {
  auto model = CpuModel::Load(TinyModelDir());
  ASSERT_TRUE(model.ok()) << model.status();
  std::vector<int32_t> prompt(100);
  for (int i = 0; i < 100; ++i) prompt[i] = 5 + (i * 131) % 4000;
  GenerateOptions opts;
  opts.max_tokens = 8;
  opts.ignore_eos = true;
  std::vector<std::vector<float>> runs[2];
  for (int threads : {1, 3}) {
    (*model)->SetThreadPool(threads > 1 ? std::make_shared<kernels::ThreadPool>(threads) : nullptr);
    auto& out = runs[threads > 1];
    ASSERT_TRUE(Generate(**model, prompt, opts, nullptr, [&](int, std::span<const float> logits) {
                  out.emplace_back(logits.begin(), logits.end());
                }).ok());
  }
  ASSERT_EQ(runs[0].size(), 8u);
  ASSERT_EQ(runs[1].size(), 8u);
  float worst = 0.0f;
  for (size_t i = 0; i < runs[0].size(); ++i) {
    for (size_t j = 0; j < runs[0][i].size(); ++j) {
      worst = std::max(worst, std::fabs(runs[0][i][j] - runs[1][i][j]));
    }
  }
  EXPECT_LT(worst, 1e-4f);
  std::printf("largest logit difference, 1 vs 3 threads: %g\n", worst);
}

TEST(GoldenTest, Llama3RopeUntiedVariantMatchesTransformers) {
  const std::string dir = SharedDir() + "/fixtures/variants/llama3-rope-untied";
  CheckGolden(dir, dir + "/golden.json");
}

TEST(GoldenTest, Qwen2BiasTiedVariantMatchesTransformers) {
  const std::string dir = SharedDir() + "/fixtures/variants/qwen2-bias-tied";
  CheckGolden(dir, dir + "/golden.json");
}

TEST(GoldenTest, Qwen3DenseVariantMatchesTransformers) {
  const std::string dir = SharedDir() + "/fixtures/variants/qwen3-dense";
  CheckGolden(dir, dir + "/golden.json");
}

TEST(GoldenTest, Qwen3MoeVariantMatchesTransformers) {
  const std::string dir = SharedDir() + "/fixtures/variants/qwen3-moe";
  CheckGolden(dir, dir + "/golden.json");
  CheckGolden(dir, dir + "/golden.json", 2);
}

// Mixtral's per-expert tensors (block_sparse_moe.experts.E.w1/w3/w2) and its renormalized
// top-2, on a small random-weight checkpoint of the repository (tests/fixtures/mixtral,
// made by its make_fixture.py with transformers).
TEST(GoldenTest, MixtralMatchesTransformers) {
  const std::string dir = testing::SourceRoot() + "/tests/fixtures/mixtral";
  CheckGolden(dir, dir + "/golden.json");
}

// Router and expert biases, the clamped SwiGLU, sinks, a 16-token sliding window on
// alternate layers (the 196-token prompt crosses it) and YaRN RoPE.
TEST(GoldenTest, GptOssVariantMatchesTransformers) {
  const std::string dir = SharedDir() + "/fixtures/variants/gpt-oss";
  CheckGolden(dir, dir + "/golden.json");
}

// The pre-v5 config layout (rope_theta + rope_scaling) must give the same model.
void CheckHubStyle(const std::string& variant) {
  const std::string src = SharedDir() + "/fixtures/variants/" + variant;
  const fs::path dir = fs::temp_directory_path() / ("sluice_hub_style_" + variant);
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(src + "/config.hub-style.json", dir / "config.json");
  fs::copy_file(src + "/generation_config.json", dir / "generation_config.json");
  fs::create_symlink(fs::absolute(src + "/model.safetensors"), dir / "model.safetensors");
  CheckGolden(dir.string(), src + "/golden.json");
  fs::remove_all(dir);
}

TEST(GoldenTest, HubStyleConfigGivesSameOutputs) {
  for (const char* variant : {"llama3-rope-untied", "qwen3-dense", "qwen3-moe", "gpt-oss"}) {
    SCOPED_TRACE(variant);
    CheckHubStyle(variant);
  }
}

}  // namespace
}  // namespace sluice
