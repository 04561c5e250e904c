// Speculative decoding side by side: the same prompts through an engine without drafts
// and one with them (the flags' --speculative-method), at several batch sizes, on two
// workloads: "code-repeat" (a function written twice and the start of a third copy,
// where prompt lookup hits) and "ordinary" (prompts that do not repeat themselves).
// For each it prints output tokens/s, the time per output token after the first (TPOT,
// prefill excluded), the drafts' acceptance, and whether the outputs were identical.
//
//   spec_bench --speculative-method ngram --num-speculative-tokens 4 --batch 1,4,8 \
//       --output-len 128 --out spec.json
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_split.h"
#include "engine/api.h"
#include "engine/flags.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/tokenizer.h"
#include "spdlog/spdlog.h"

namespace sluice {
namespace {

using Clock = std::chrono::steady_clock;

// Functions written twice, then the first line of a third copy.
const char* const kCodeBodies[] = {
    "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    result = a + b\n"
    "    return result\n",
    "def read_lines(path):\n    with open(path) as f:\n        lines = [l.rstrip() for l in f]\n"
    "    return [l for l in lines if l]\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\n"
    "    def norm(self):\n        return (self.x ** 2 + self.y ** 2) ** 0.5\n",
    "for i in range(10):\n    if i % 2 == 0:\n        print(i, 'even')\n    else:\n"
    "        print(i, 'odd')\n",
};

const char* const kOrdinary[] = {
    "def quicksort(arr):\n",
    "import os\nimport sys\n\n\ndef main():\n",
    "class Stack:\n    \"\"\"A last-in first-out container.\"\"\"\n",
    "# Parse a configuration file and return a dictionary of settings\n",
};

std::vector<std::string> Prompts(const std::string& workload) {
  std::vector<std::string> out;
  if (workload == "code-repeat") {
    for (const char* body : kCodeBodies) {
      const std::string b(body);
      out.push_back(b + "\n\n" + b + "\n\n" + b.substr(0, b.find('\n') + 1));
    }
  } else {
    for (const char* p : kOrdinary) out.push_back(p);
  }
  return out;
}

struct Run {
  double seconds = 0;  // submission to the last token
  double tpot_s = 0;   // mean over requests of (last - first token) / (tokens - 1)
  int64_t output_tokens = 0;
  std::vector<std::vector<int32_t>> outputs;
  int64_t drafts = 0, draft_tokens = 0, accepted = 0;
};

Run RunOnce(Engine& engine, const std::vector<std::vector<int32_t>>& prompts, int batch,
            int output_len, float temperature) {
  const EngineStats before = engine.Stats();
  std::vector<std::shared_ptr<RequestStream>> streams;
  const auto start = Clock::now();
  for (int i = 0; i < batch; ++i) {
    SubmitParams p;
    p.prompt_ids = prompts[static_cast<size_t>(i) % prompts.size()];
    p.sampling.max_tokens = output_len;
    p.sampling.ignore_eos = true;
    p.sampling.temperature = temperature;
    p.sampling.seed = static_cast<uint64_t>(i);
    auto s = engine.Submit(std::move(p));
    if (!s.ok()) {
      spdlog::error("submit: {}", s.status().ToString());
      std::exit(1);
    }
    streams.push_back(*s);
  }
  Run run;
  for (auto& s : streams) {
    std::vector<int32_t> ids;
    Clock::time_point first{}, last{};
    bool done = false;
    while (!done) {
      auto o = s->Pop(std::chrono::minutes(10));
      if (!o) {
        spdlog::error("request {} timed out", s->id());
        std::exit(1);
      }
      // The engine's time of each output (Pop may return later than it was pushed).
      if (!o->new_token_ids.empty()) {
        if (ids.empty()) first = o->time;
        last = o->time;
      }
      ids.insert(ids.end(), o->new_token_ids.begin(), o->new_token_ids.end());
      done = o->finished();
    }
    run.output_tokens += static_cast<int64_t>(ids.size());
    if (ids.size() > 1) {
      run.tpot_s += std::chrono::duration<double>(last - first).count() / (ids.size() - 1);
    }
    run.seconds = std::max(run.seconds, std::chrono::duration<double>(last - start).count());
    run.outputs.push_back(std::move(ids));
  }
  run.tpot_s /= static_cast<double>(streams.size());
  const EngineStats after = engine.Stats();
  run.drafts = after.spec_num_drafts - before.spec_num_drafts;
  run.draft_tokens = after.spec_num_draft_tokens - before.spec_num_draft_tokens;
  run.accepted = after.spec_num_accepted_tokens - before.spec_num_accepted_tokens;
  return run;
}

// The run of median TPOT among `runs`.
Run Median(std::vector<Run> runs) {
  std::sort(runs.begin(), runs.end(),
            [](const Run& a, const Run& b) { return a.tpot_s < b.tpot_s; });
  return runs[runs.size() / 2];
}

int Main(int argc, char** argv) {
  CLI::App app("Speculative decoding against plain decoding, side by side");
  EngineOptions options;
  AddEngineFlags(&app, &options);
  std::string batches = "1,4,8";
  std::string workloads = "code-repeat,ordinary";
  int output_len = 128, repeats = 3;
  float temperature = 0.0f;
  std::string out_path;
  app.add_option("--batch", batches, "Batch sizes (requests submitted at once), comma-separated");
  app.add_option("--workload", workloads, "code-repeat, ordinary, or both (comma-separated)");
  app.add_option("--output-len", output_len, "Tokens generated per request")
      ->check(CLI::Range(2, 4096));
  app.add_option("--repeats", repeats, "Runs of each configuration; the median is reported")
      ->check(CLI::Range(1, 50));
  app.add_option("--temperature", temperature, "0 is greedy")->check(CLI::NonNegativeNumber);
  app.add_option("--out", out_path, "Write the figures as JSON");
  CLI11_PARSE(app, argc, argv);
  if (options.speculative_method.empty()) {
    std::fprintf(stderr, "spec_bench: give --speculative-method ngram or draft\n");
    return 2;
  }
  options.quiet = true;
  EngineOptions plain_options = options;
  plain_options.speculative_method.clear();
  plain_options.draft_model.clear();
  auto plain = Engine::Load(plain_options);
  auto spec = Engine::Load(options);
  if (!plain.ok() || !spec.ok()) {
    spdlog::error("{}", (!plain.ok() ? plain.status() : spec.status()).ToString());
    return 1;
  }
  auto tok = Tokenizer::FromDir((*plain)->model().model_dir);
  if (!tok.ok()) {
    spdlog::error("{}", tok.status().ToString());
    return 1;
  }
  nlohmann::json report = nlohmann::json::array();
  std::printf("%-12s %5s | %10s %10s | %9s %9s | %7s %9s %9s | %s\n", "workload", "batch",
              "plain tok/s", "spec tok/s", "plain ms", "spec ms", "speedup", "accepted", "per step",
              "same output");
  for (const std::string& workload : std::vector<std::string>(absl::StrSplit(workloads, ','))) {
    std::vector<std::vector<int32_t>> prompts;
    for (const std::string& text : Prompts(workload)) {
      auto ids = (*tok)->Encode(text, true);
      if (!ids.ok()) {
        spdlog::error("{}", ids.status().ToString());
        return 1;
      }
      prompts.push_back(*ids);
    }
    for (const std::string& b : std::vector<std::string>(absl::StrSplit(batches, ','))) {
      const int batch = std::stoi(b);
      spdlog::info("{} at batch {}: {} runs each", workload, batch, repeats);
      std::vector<Run> a, s;
      RunOnce(**plain, prompts, batch, 8, temperature);  // warm both
      RunOnce(**spec, prompts, batch, 8, temperature);
      for (int r = 0; r < repeats; ++r) {
        a.push_back(RunOnce(**plain, prompts, batch, output_len, temperature));
        s.push_back(RunOnce(**spec, prompts, batch, output_len, temperature));
      }
      const Run pa = Median(a), ps = Median(s);
      const bool same = pa.outputs == ps.outputs;
      const double acceptance =
          ps.draft_tokens > 0 ? static_cast<double>(ps.accepted) / ps.draft_tokens : 0.0;
      const double per_step = ps.drafts > 0 ? static_cast<double>(ps.accepted) / ps.drafts : 0.0;
      const double plain_tps = pa.output_tokens / pa.seconds,
                   spec_tps = ps.output_tokens / ps.seconds;
      std::printf("%-12s %5d | %10.1f %10.1f | %9.2f %9.2f | %6.2fx %8.1f%% %9.2f | %s\n",
                  workload.c_str(), batch, plain_tps, spec_tps, pa.tpot_s * 1e3, ps.tpot_s * 1e3,
                  pa.tpot_s / ps.tpot_s, 100 * acceptance, per_step, same ? "yes" : "NO");
      std::fflush(stdout);
      report.push_back({{"workload", workload},
                        {"batch", batch},
                        {"output_len", output_len},
                        {"plain_tokens_per_s", plain_tps},
                        {"spec_tokens_per_s", spec_tps},
                        {"plain_tpot_ms", pa.tpot_s * 1e3},
                        {"spec_tpot_ms", ps.tpot_s * 1e3},
                        {"acceptance", acceptance},
                        {"accepted_per_verification", per_step},
                        {"draft_tokens", ps.draft_tokens},
                        {"same_output", same}});
    }
  }
  if (!out_path.empty()) {
    nlohmann::json doc = {{"method", options.speculative_method},
                          {"num_speculative_tokens", options.num_speculative_tokens},
                          {"model", (*plain)->model().model_dir},
                          {"device", options.device},
                          {"results", report}};
    std::ofstream(out_path) << doc.dump(2) << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) { return sluice::Main(argc, argv); }
