// Speculative decoding side by side: the same prompts through an engine without drafts
// and one with them (the flags' --speculative-method), at several batch sizes, on two
// workloads: "code-repeat" (a function written twice and the start of a third copy,
// where prompt lookup hits) and "ordinary" (prompts that do not repeat themselves).
// greedy and sampled. For each it prints output tokens/s, the time per output token
// after the first (TPOT, prefill excluded), the drafts' acceptance, and whether the
// outputs were identical; --svg plots the TPOT speedup against the batch size.
//
//   spec_bench --speculative-method ngram --num-speculative-tokens 4 --batch 1,4,8 \
//       --temperature 0,1 --output-len 128 --out spec.json --svg spec.svg
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
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

struct Point {
  std::string series;
  int batch;
  double speedup;
};

// Speedup of TPOT against the batch size, one line per series, 1x dashed.
std::string Svg(const std::vector<Point>& points, const std::string& title) {
  constexpr double kW = 640, kH = 380, kL = 60, kR = 170, kT = 40, kB = 50;
  const double pw = kW - kL - kR, ph = kH - kT - kB;
  int max_batch = 1;
  double max_y = 1.5;
  for (const Point& p : points) {
    max_batch = std::max(max_batch, p.batch);
    max_y = std::max(max_y, p.speedup * 1.1);
  }
  max_y = std::ceil(max_y * 2) / 2;
  const double lmax = std::log2(static_cast<double>(max_batch));
  auto x = [&](int b) {
    return kL + (lmax > 0 ? std::log2(static_cast<double>(b)) / lmax : 0) * pw;
  };
  auto y = [&](double v) { return kT + ph - v / max_y * ph; };
  std::string svg = absl::StrFormat(
      "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' font-family='sans-serif' "
      "font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n"
      "<text x='%.0f' y='22' font-size='14'>%s</text>\n",
      kW, kH, kL, title);
  for (double v = 0; v <= max_y + 1e-9; v += 0.5) {
    svg += absl::StrFormat(
        "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='#ddd'/><text x='%.1f' y='%.1f' "
        "text-anchor='end'>%.1fx</text>\n",
        kL, kL + pw, y(v), y(v), kL - 6, y(v) + 4, v);
  }
  for (int b = 1; b <= max_batch; b *= 2) {
    svg += absl::StrFormat("<text x='%.1f' y='%.1f' text-anchor='middle'>%d</text>\n", x(b),
                           kT + ph + 18, b);
  }
  svg += absl::StrFormat(
      "<text x='%.1f' y='%.1f' text-anchor='middle'>requests at once (batch)</text>\n"
      "<text x='16' y='%.1f' transform='rotate(-90 16 %.1f)' text-anchor='middle'>TPOT plain / "
      "TPOT speculative</text>\n<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='black' "
      "stroke-dasharray='5,4'/>\n",
      kL + pw / 2, kH - 12, kT + ph / 2, kT + ph / 2, kL, kL + pw, y(1), y(1));
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
  std::vector<std::string> names;
  for (const Point& p : points) {
    if (std::find(names.begin(), names.end(), p.series) == names.end()) names.push_back(p.series);
  }
  for (size_t i = 0; i < names.size(); ++i) {
    const char* color = colors[i % 6];
    std::string path;
    for (const Point& p : points) {
      if (p.series != names[i]) continue;
      path += absl::StrFormat("%s%.1f,%.1f ", path.empty() ? "M" : "L", x(p.batch), y(p.speedup));
      svg += absl::StrFormat("<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n", x(p.batch),
                             y(p.speedup), color);
    }
    svg +=
        absl::StrFormat("<path d='%s' fill='none' stroke='%s' stroke-width='2'/>\n", path, color);
    svg += absl::StrFormat(
        "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='%s' stroke-width='2'/><text "
        "x='%.1f' "
        "y='%.1f'>%s</text>\n",
        kW - kR + 12, kW - kR + 30, kT + 10 + 18.0 * i, kT + 10 + 18.0 * i, color, kW - kR + 36,
        kT + 14 + 18.0 * i, names[i]);
  }
  return svg + "</svg>\n";
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
  std::string temperatures = "0";
  std::string out_path, svg_path;
  app.add_option("--batch", batches, "Batch sizes (requests submitted at once), comma-separated");
  app.add_option("--workload", workloads, "code-repeat, ordinary, or both (comma-separated)");
  app.add_option("--output-len", output_len, "Tokens generated per request")
      ->check(CLI::Range(2, 4096));
  app.add_option("--repeats", repeats, "Runs of each configuration; the median is reported")
      ->check(CLI::Range(1, 50));
  app.add_option("--temperature", temperatures, "Temperatures, comma-separated (0 is greedy)");
  app.add_option("--out", out_path, "Write the figures as JSON");
  app.add_option("--svg", svg_path, "Plot the speedups into this SVG file");
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
  std::vector<Point> points;
  std::printf("%-12s %4s %5s | %10s %10s | %9s %9s | %7s %9s %9s | %s\n", "workload", "temp",
              "batch", "plain tok/s", "spec tok/s", "plain ms", "spec ms", "speedup", "accepted",
              "per step", "same output");
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
    for (const std::string& t : std::vector<std::string>(absl::StrSplit(temperatures, ',')))
      for (const std::string& b : std::vector<std::string>(absl::StrSplit(batches, ','))) {
        const float temperature = std::stof(t);
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
        const EngineStats fit = (*spec)->Stats();
        const double acceptance =
            ps.draft_tokens > 0 ? static_cast<double>(ps.accepted) / ps.draft_tokens : 0.0;
        const double per_step = ps.drafts > 0 ? static_cast<double>(ps.accepted) / ps.drafts : 0.0;
        const double plain_tps = pa.output_tokens / pa.seconds,
                     spec_tps = ps.output_tokens / ps.seconds;
        std::printf("%-12s %4.1f %5d | %10.1f %10.1f | %9.2f %9.2f | %6.2fx %8.1f%% %9.2f | %s\n",
                    workload.c_str(), temperature, batch, plain_tps, spec_tps, pa.tpot_s * 1e3,
                    ps.tpot_s * 1e3, pa.tpot_s / ps.tpot_s, 100 * acceptance, per_step,
                    same ? "yes" : "NO");
        std::fflush(stdout);
        points.push_back(
            {absl::StrFormat("%s, T=%g", workload, temperature), batch, pa.tpot_s / ps.tpot_s});
        report.push_back({{"workload", workload},
                          {"temperature", temperature},
                          {"batch", batch},
                          {"output_len", output_len},
                          {"plain_tokens_per_s", plain_tps},
                          {"spec_tokens_per_s", spec_tps},
                          {"plain_tpot_ms", pa.tpot_s * 1e3},
                          {"spec_tpot_ms", ps.tpot_s * 1e3},
                          {"acceptance", acceptance},
                          {"accepted_per_verification", per_step},
                          {"draft_tokens", ps.draft_tokens},
                          {"same_output", same},
                          {"step_base_ms", fit.spec_step_base_s * 1e3},
                          {"step_per_token_ms", fit.spec_step_per_token_s * 1e3}});
      }
  }
  const EngineStats fit = (*spec)->Stats();
  std::printf("step cost fitted by the speculative engine: %.2f ms + %.3f ms per token\n",
              fit.spec_step_base_s * 1e3, fit.spec_step_per_token_s * 1e3);
  if (!out_path.empty()) {
    nlohmann::json doc = {{"method", options.speculative_method},
                          {"num_speculative_tokens", options.num_speculative_tokens},
                          {"model", (*plain)->model().model_dir},
                          {"device", options.device},
                          {"results", report}};
    std::ofstream(out_path) << doc.dump(2) << "\n";
  }
  if (!svg_path.empty()) {
    std::ofstream(svg_path) << Svg(
        points, absl::StrFormat("--speculative-method %s, %d drafts: TPOT speedup",
                                options.speculative_method, options.num_speculative_tokens));
  }
  return 0;
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) { return sluice::Main(argc, argv); }
