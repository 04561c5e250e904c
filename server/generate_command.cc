#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "engine/model/cpu_model.h"
#include "engine/model/generate.h"
#include "engine/tokenizer/incremental_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "server/commands.h"
#include "spdlog/spdlog.h"

namespace sluice {
namespace {

struct GenerateFlags {
  std::string model;
  std::string prompt;
  int max_tokens = 64;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int top_k = 0;
  float min_p = 0.0f;
  uint64_t seed = 0;
  bool ignore_eos = false;
  bool json = false;
};

int RunGenerate(const GenerateFlags& f) {
  const std::string dir = f.model.empty() ? DefaultModelDir() : f.model;
  auto tokenizer = Tokenizer::FromDir(dir);
  if (!tokenizer.ok()) {
    spdlog::error("cannot load tokenizer: {}", tokenizer.status().ToString());
    return 2;
  }
  const auto load_start = std::chrono::steady_clock::now();
  auto model = CpuModel::Load(dir, [&](int done, int total) {
    if (!f.json) spdlog::info("loading {}: layer {}/{}", dir, done, total);
  });
  if (!model.ok()) {
    spdlog::error("cannot load model: {}", model.status().ToString());
    return 2;
  }
  if (!f.json) {
    spdlog::info("{} loaded in {:.2f} s", (*model)->config().Summary(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start)
                     .count());
  }
  auto prompt_ids = (*tokenizer)->Encode(f.prompt, /*add_special_tokens=*/true);
  if (!prompt_ids.ok()) {
    spdlog::error("cannot tokenize the prompt: {}", prompt_ids.status().ToString());
    return 2;
  }
  GenerateOptions opts;
  opts.max_tokens = f.max_tokens;
  opts.temperature = f.temperature;
  opts.top_p = f.top_p;
  opts.top_k = f.top_k;
  opts.min_p = f.min_p;
  opts.seed = f.seed;
  opts.ignore_eos = f.ignore_eos;

  IncrementalDetokenizer detok(**tokenizer, *prompt_ids);
  const auto start = std::chrono::steady_clock::now();
  auto result = Generate(**model, *prompt_ids, opts, [&](int32_t id) {
    if (f.json) return;
    std::cout << detok.Push(id) << std::flush;
  });
  if (!result.ok()) {
    spdlog::error("generation failed: {}", result.status().ToString());
    return 1;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (f.json) {
    nlohmann::json out;
    out["prompt_ids"] = *prompt_ids;
    out["output_ids"] = result->output_ids;
    out["text"] = (*tokenizer)->Decode(result->output_ids, /*skip_special_tokens=*/true);
    out["finish_reason"] = result->finish_reason;
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << detok.Finish() << "\n";
    spdlog::info("{} tokens in {:.3f} s ({:.1f} tok/s), finish: {}", result->output_ids.size(),
                 seconds, result->output_ids.size() / seconds, result->finish_reason);
  }
  return 0;
}

}  // namespace

std::string DefaultModelDir() {
  if (const char* env = std::getenv("SLUICE_MODEL"); env != nullptr && *env != '\0') return env;
  return SLUICE_DEFAULT_MODEL_DIR;
}

void AddGenerateCommand(CLI::App& app, std::function<int()>* run) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate a completion from the CLI");
  cmd->add_option("--model", flags->model, "Model directory (default: the embedded tiny model)");
  cmd->add_option("--prompt", flags->prompt, "Prompt text")->required();
  cmd->add_option("--max-tokens", flags->max_tokens, "Tokens to generate")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", flags->temperature, "0 is greedy")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", flags->top_p, "Nucleus mass")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--top-k", flags->top_k, "Keep the k most likely (0: off)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--min-p", flags->min_p, "Drop tokens under min_p * p_max")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", flags->seed, "Sampling seed");
  cmd->add_flag("--ignore-eos", flags->ignore_eos, "Keep generating past end-of-sequence");
  cmd->add_flag("--json", flags->json,
                "Print one JSON line {prompt_ids, output_ids, text, finish_reason}");
  cmd->callback([flags, run] { *run = [flags] { return RunGenerate(*flags); }; });
}

}  // namespace sluice
