// `sluice generate`: one prompt (--prompt), or many at once through the engine
// (--prompts-file, JSON lines), printing text or JSON lines in input order.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/flags.h"
#include "nlohmann/json.hpp"
#include "server/commands.h"
#include "server/core/serving_model.h"
#include "server/tokenizer/incremental_detokenizer.h"
#include "spdlog/spdlog.h"

namespace sluice {
namespace {

using nlohmann::json;

struct GenerateFlags {
  EngineOptions engine;
  std::string prompt;
  std::string prompts_file;
  int max_tokens = 64;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int top_k = 0;
  float min_p = 0.0f;
  int64_t seed = -1;
  bool ignore_eos = false;
  bool json = false;
};

struct Job {
  std::string prompt;
  SubmitParams params;
};

// A job for `prompt` with the flags' sampling parameters.
Job FromFlags(std::string prompt, const GenerateFlags& f) {
  Job job;
  job.prompt = std::move(prompt);
  SamplingParams& s = job.params.sampling;
  s.max_tokens = f.max_tokens;
  s.temperature = f.temperature;
  s.top_p = f.top_p;
  s.top_k = f.top_k;
  s.min_p = f.min_p;
  s.ignore_eos = f.ignore_eos;
  if (f.seed >= 0) s.seed = static_cast<uint64_t>(f.seed);
  return job;
}

// Reads one JSON line of a prompts file into a job; defaults come from the flags.
absl::StatusOr<Job> ParseLine(const std::string& line, const GenerateFlags& f) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  if (!j.contains("prompt") || !j["prompt"].is_string()) {
    return absl::InvalidArgumentError("\"prompt\" must be a string");
  }
  // Every field is honoured or refused by name: a typo must not run with the default.
  static constexpr const char* kFields[] = {
      "prompt", "max_tokens", "temperature",    "top_p",      "top_k",      "min_p",
      "seed",   "ignore_eos", "stop_token_ids", "cache_salt", "speculative"};
  for (const auto& [key, value] : j.items()) {
    if (std::find_if(std::begin(kFields), std::end(kFields),
                     [&](const char* k) { return key == k; }) == std::end(kFields)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown field \"", key, "\" (known: ", absl::StrJoin(kFields, ", "), ")"));
    }
  }
  Job job = FromFlags(j["prompt"].get<std::string>(), f);
  SamplingParams& s = job.params.sampling;
  try {
    if (j.contains("max_tokens")) s.max_tokens = j["max_tokens"].get<int>();
    if (j.contains("temperature")) s.temperature = j["temperature"].get<float>();
    if (j.contains("top_p")) s.top_p = j["top_p"].get<float>();
    if (j.contains("top_k")) s.top_k = j["top_k"].get<int>();
    if (j.contains("min_p")) s.min_p = j["min_p"].get<float>();
    if (j.contains("seed")) s.seed = j["seed"].get<uint64_t>();
    if (j.contains("ignore_eos")) s.ignore_eos = j["ignore_eos"].get<bool>();
    if (j.contains("stop_token_ids"))
      s.stop_token_ids = j["stop_token_ids"].get<std::vector<int32_t>>();
    if (j.contains("cache_salt")) job.params.cache_salt = j["cache_salt"].get<std::string>();
    if (j.contains("speculative")) s.speculative = j["speculative"].get<bool>();
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("a field has the wrong type: ", e.what()));
  }
  return job;
}

absl::StatusOr<std::vector<Job>> ReadJobs(const GenerateFlags& f) {
  std::vector<Job> jobs;
  if (f.prompts_file.empty()) {
    jobs.push_back(FromFlags(f.prompt, f));
    return jobs;
  }
  std::ifstream in(f.prompts_file);
  if (!in) return absl::NotFoundError(absl::StrCat(f.prompts_file, ": cannot open"));
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto job = ParseLine(line, f);
    if (!job.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(f.prompts_file, ":", n, ": ", job.status().message()));
    }
    jobs.push_back(std::move(*job));
  }
  return jobs;
}

int RunGenerate(GenerateFlags f) {
  auto jobs = ReadJobs(f);
  if (!jobs.ok()) {
    spdlog::error("{}", std::string(jobs.status().message()));
    return 2;
  }
  // Every prompt is submitted at once, so the waiting limits must hold them all.
  f.engine.max_waiting_requests = std::max<int>(f.engine.max_waiting_requests, jobs->size());
  f.engine.max_waiting_tokens = std::numeric_limits<int32_t>::max();
  f.engine.quiet = f.json;
  auto loaded = LoadServingModel(f.engine);
  if (!loaded.ok()) {
    spdlog::error("cannot load model: {}", std::string(loaded.status().message()));
    return 2;
  }
  const Tokenizer& tok = *loaded->tokenizer;
  std::vector<std::shared_ptr<RequestStream>> streams;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < jobs->size(); ++i) {
    Job& job = (*jobs)[i];
    auto ids = tok.Encode(job.prompt, /*add_special_tokens=*/true);
    if (!ids.ok()) {
      spdlog::error("prompt {}: {}", i + 1, std::string(ids.status().message()));
      return 2;
    }
    job.params.prompt_ids = std::move(*ids);
    auto stream = loaded->engine->Submit(job.params);
    if (!stream.ok()) {
      spdlog::error("prompt {}: {}", i + 1, std::string(stream.status().message()));
      return 2;
    }
    streams.push_back(*stream);
  }
  const bool stream_text = !f.json && streams.size() == 1;
  int64_t total_tokens = 0;
  for (size_t i = 0; i < streams.size(); ++i) {
    IncrementalDetokenizer detok(tok, /*skip_special_tokens=*/true);
    std::vector<int32_t> output;
    RequestOutput last;
    while (!last.finished()) {
      auto o = streams[i]->Pop(std::chrono::hours(1));
      if (!o) continue;
      last = std::move(*o);
      output.insert(output.end(), last.new_token_ids.begin(), last.new_token_ids.end());
      if (stream_text) std::cout << detok.Add(last.new_token_ids) << std::flush;
    }
    total_tokens += static_cast<int64_t>(output.size());
    if (last.finish_reason == FinishReason::kError) {
      spdlog::error("prompt {} failed: {}", i + 1, last.error);
      return 1;
    }
    const std::string text = tok.Decode(output, /*skip_special_tokens=*/true);
    if (f.json) {
      json line = {{"prompt_ids", (*jobs)[i].params.prompt_ids},
                   {"output_ids", output},
                   {"text", text},
                   {"cached_prompt_tokens", last.num_cached_prompt_tokens},
                   {"finish_reason", FinishReasonName(last.finish_reason)}};
      std::cout << line.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    } else if (stream_text) {
      std::cout << detok.Finish() << "\n";
    } else {
      std::cout << "--- prompt " << i + 1 << " (" << FinishReasonName(last.finish_reason) << ")\n"
                << (*jobs)[i].prompt << text << "\n";
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!f.json) {
    spdlog::info("{} requests, {} tokens in {:.3f} s ({:.1f} tok/s)", streams.size(), total_tokens,
                 seconds, total_tokens / seconds);
  }
  loaded->engine->Shutdown();
  return 0;
}

}  // namespace

void AddGenerateCommand(CLI::App& app, std::function<int()>* run) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate completions from the command line");
  AddEngineFlags(cmd, &f->engine);
  auto* prompt = cmd->add_option("--prompt", f->prompt, "Prompt text");
  auto* file = cmd->add_option("--prompts-file", f->prompts_file,
                               "JSON lines {\"prompt\": ..., and optionally max_tokens, "
                               "temperature, top_p, top_k, min_p, seed, ignore_eos, "
                               "stop_token_ids, cache_salt, speculative}, run together");
  prompt->excludes(file);
  cmd->add_option("--max-tokens", f->max_tokens, "Tokens to generate")->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", f->temperature, "0 is greedy")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", f->top_p, "Nucleus mass")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--top-k", f->top_k, "Keep the k most likely (0: off)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--min-p", f->min_p, "Drop tokens under min_p * p_max")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", f->seed, "Sampling seed (default: random)");
  cmd->add_flag("--ignore-eos", f->ignore_eos, "Keep generating past end-of-sequence");
  cmd->add_flag("--json", f->json,
                "One JSON line per prompt: prompt_ids, output_ids, text, cached_prompt_tokens, "
                "finish_reason");
  cmd->callback([f, cmd, run] {
    if (cmd->count("--prompt") == 0 && cmd->count("--prompts-file") == 0) {
      throw CLI::RequiredError("--prompt or --prompts-file");
    }
    *run = [f] { return RunGenerate(*f); };
  });
}

}  // namespace sluice
