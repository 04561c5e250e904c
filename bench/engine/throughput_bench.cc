// Offline throughput through the engine, in the manner of `vllm bench throughput`: N
// requests with given input and output lengths (random token ids, or the conversations
// of a ShareGPT-format file) submitted at once; prints output tokens/s, the mean decode
// step time and its fraction of the roofline (weights + KV bytes a decode step must read,
// over the copy bandwidth measured in the same run).
//
//   throughput_bench --device cuda --model models/configs/llama-3.1-8b --random-weights \
//       --num-requests 256 --input-len 512 --output-len 512 --max-num-seqs 256
// With --structured, every request decodes under one grammar (structured outputs).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/container/flat_hash_map.h"
#include "engine/api.h"
#include "engine/capacity.h"
#include "engine/core/loader.h"
#include "engine/flags.h"
#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"
#include "engine/runner/cuda_runner.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/tokenizer.h"
#include "spdlog/spdlog.h"

namespace sluice {
namespace {

using Clock = std::chrono::steady_clock;

// One step as the runner saw it.
struct StepRecord {
  double seconds = 0;
  int num_tokens = 0;
  int num_seqs = 0;
  bool decode_only = false;
  int64_t context_tokens = 0;  // KV positions the step's attention reads
};

// Forwards to the real runner and times each step (host preparation, device work and
// the copy of the sampled ids back: what one engine iteration waits for).
class TimedRunner : public Runner {
 public:
  explicit TimedRunner(std::unique_ptr<Runner> inner) : inner_(std::move(inner)) {}

  absl::StatusOr<StepResult> Execute(const SchedulerOutput& output) override {
    for (RequestId id : output.finished_ids) context_.erase(id);
    for (RequestId id : output.preempted_ids) context_.erase(id);
    for (const NewRequestData& n : output.new_requests) context_[n.id] = n.num_computed_tokens;
    if (output.scheduled.empty()) return inner_->Execute(output);  // retires only: no step
    StepRecord r;
    r.decode_only = !output.scheduled.empty();
    for (const ScheduledTokens& st : output.scheduled) {
      int64_t& ctx = context_[st.id];
      ctx += st.num_tokens;
      r.context_tokens += ctx;
      r.num_tokens += st.num_tokens;
      ++r.num_seqs;
      // A decode is one known token (and any drafts verified with it).
      if (st.num_tokens - static_cast<int>(st.draft_ids.size()) != 1) r.decode_only = false;
    }
    const auto start = Clock::now();
    auto result = inner_->Execute(output);
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    std::lock_guard<std::mutex> lock(mu_);
    steps_.push_back(r);
    return result;
  }
  int num_kv_blocks() const override { return inner_->num_kv_blocks(); }
  int block_size() const override { return inner_->block_size(); }
  int vocab_size() const override { return inner_->vocab_size(); }
  int num_requests() const override { return inner_->num_requests(); }

  std::vector<StepRecord> steps() const {
    std::lock_guard<std::mutex> lock(mu_);
    return steps_;
  }

 private:
  std::unique_ptr<Runner> inner_;
  absl::flat_hash_map<RequestId, int64_t> context_;
  mutable std::mutex mu_;
  std::vector<StepRecord> steps_;
};

struct Workload {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int> output_lens;
};

Workload RandomWorkload(int n, int input_len, int output_len, int vocab, uint32_t seed) {
  Workload w;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(std::min(100, vocab / 4), vocab - 1);
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> p(input_len);
    for (int32_t& t : p) t = id(rng);
    w.prompts.push_back(std::move(p));
    w.output_lens.push_back(output_len);
  }
  return w;
}

// ShareGPT: [{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}].
// The first turn is the prompt, the second's token count the output length.
absl::StatusOr<Workload> ShareGptWorkload(const std::string& path, int n, int max_len,
                                          const Tokenizer& tok) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open " + path);
  nlohmann::json data;
  try {
    data = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(path + ": " + e.what());
  }
  Workload w;
  for (const auto& item : data) {
    if (static_cast<int>(w.prompts.size()) >= n) break;
    const auto& conv = item.value("conversations", nlohmann::json::array());
    if (conv.size() < 2 || !conv[0].contains("value") || !conv[1].contains("value")) continue;
    auto prompt = tok.Encode(conv[0]["value"].get<std::string>(), true);
    auto completion = tok.Encode(conv[1]["value"].get<std::string>(), false);
    if (!prompt.ok() || !completion.ok()) continue;
    if (prompt->size() < 4 || completion->size() < 4 ||
        static_cast<int>(prompt->size() + completion->size()) > max_len) {
      continue;  // as vllm bench does: too short to measure, or past the context
    }
    w.prompts.push_back(std::move(*prompt));
    w.output_lens.push_back(static_cast<int>(completion->size()));
  }
  if (w.prompts.empty()) return absl::InvalidArgumentError(path + ": no usable conversations");
  return w;
}

// --structured: one constraint over the model's tokenizer.
absl::StatusOr<std::shared_ptr<const OutputConstraint>> StructuredConstraint(
    const std::string& spec, const std::string& model_dir, const ModelConfig& config) {
  auto tok = Tokenizer::FromDir(model_dir);
  if (!tok.ok()) return tok.status();
  absl::StatusOr<std::shared_ptr<const grammar::Grammar>> g;
  if (spec.starts_with("regex:")) {
    g = grammar::CompileRegex(spec.substr(6));
  } else if (spec.starts_with("json-schema:")) {
    std::ifstream in(spec.substr(12));
    if (!in) return absl::NotFoundError("cannot open " + spec.substr(12));
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    g = grammar::CompileJsonSchema(text);
  } else if (spec == "json-object") {
    g = grammar::CompileJsonObject();
  } else {
    return absl::InvalidArgumentError("expected regex:PATTERN, json-schema:FILE or json-object");
  }
  if (!g.ok()) return g.status();
  std::vector<std::string> bytes(
      static_cast<size_t>(std::max(config.vocab_size, (*tok)->vocab_size())));
  for (int32_t id = 0; id < (*tok)->vocab_size(); ++id) bytes[id] = (*tok)->TokenBytes(id);
  auto vocab = std::make_shared<const grammar::Vocabulary>(std::move(bytes), config.eos_token_ids);
  auto automaton = std::make_shared<grammar::Automaton>(*g, vocab);
  return std::make_shared<const OutputConstraint>(OutputConstraint{*g, vocab, automaton});
}

double HostCopyBandwidth() {
  const size_t bytes = size_t{256} << 20;
  std::vector<char> a(bytes, 1), b(bytes, 2);
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    std::memcpy(b.data(), a.data(), bytes);
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
  }
  return 2.0 * bytes / best / 1e9;
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))];
}

int Run(int argc, char** argv) {
  CLI::App app("Offline throughput through the Sluice engine");
  EngineOptions options;
  options.max_num_seqs = 256;
  options.max_waiting_requests = 1 << 20;
  options.max_waiting_tokens = int64_t{1} << 40;
  AddEngineFlags(&app, &options);
  int num_requests = 64, input_len = 512, output_len = 128;
  std::string dataset = "random", out_path;
  uint32_t seed = 0;
  app.add_option("--num-requests", num_requests, "Requests, all submitted at once")
      ->check(CLI::PositiveNumber);
  app.add_option("--input-len", input_len, "Prompt tokens (random dataset)")
      ->check(CLI::PositiveNumber);
  app.add_option("--output-len", output_len, "Generated tokens per request (random dataset)")
      ->check(CLI::PositiveNumber);
  app.add_option("--dataset", dataset, "random, or sharegpt:FILE");
  app.add_option("--seed", seed, "Seed of the random prompts");
  app.add_option("--out", out_path, "Write the figures as JSON");
  std::string structured;
  app.add_option("--structured", structured,
                 "Constrain every request (one grammar shared by all, as the server caches it): "
                 "regex:PATTERN, json-schema:FILE or json-object");
  CLI11_PARSE(app, argc, argv);

  const std::string model_dir = options.model.empty() ? DefaultModelDir() : options.model;
  ModelConfig config;
  auto inner = CreateRunner(options, model_dir, &config);
  if (!inner.ok()) {
    spdlog::error("{}", std::string(inner.status().message()));
    return 1;
  }
  // What the runner holds, and what `sluice plan` would have planned for this device:
  // the two must agree (exactly on the CPU, within 2% on CUDA).
  const MemoryUsage memory = (*inner)->memory();
  PlanOptions po;
  po.backend = options.device;
  po.device = {"this device", memory.device_total / (1024.0 * 1024 * 1024), 0, 0, "the driver"};
  po.gpu_memory_utilization = options.gpu_memory_utilization;
  po.kv_cache_gib = options.kv_cache_gib;
  po.block_size = options.block_size;
  po.tensor_parallel_size = options.tensor_parallel_size;
  po.max_num_seqs = options.max_num_seqs;
  po.max_num_batched_tokens = options.max_num_batched_tokens;
  const absl::StatusOr<CapacityPlan> planned = PlanCapacity(config, po);
  const int kv_blocks = (*inner)->num_kv_blocks();
  Workload w;
  if (dataset == "random") {
    w = RandomWorkload(num_requests, input_len, output_len, config.vocab_size, seed);
  } else if (dataset.starts_with("sharegpt:")) {
    auto tok = Tokenizer::FromDir(model_dir);
    if (!tok.ok()) {
      spdlog::error("{}", std::string(tok.status().message()));
      return 1;
    }
    auto sw =
        ShareGptWorkload(dataset.substr(9), num_requests, config.max_position_embeddings, **tok);
    if (!sw.ok()) {
      spdlog::error("{}", std::string(sw.status().message()));
      return 1;
    }
    w = std::move(*sw);
  } else {
    spdlog::error("--dataset {}: expected random or sharegpt:FILE", dataset);
    return 1;
  }
  std::shared_ptr<const OutputConstraint> constraint;
  if (!structured.empty()) {
    auto c = StructuredConstraint(structured, model_dir, config);
    if (!c.ok()) {
      spdlog::error("--structured {}: {}", structured, std::string(c.status().message()));
      return 1;
    }
    constraint = *std::move(c);
  }
  const double copy_gbs =
      options.device == "cuda" ? MeasureCudaCopyBandwidth(0).value_or(0.0) : HostCopyBandwidth();

  auto timed_owner = std::make_unique<TimedRunner>(std::move(*inner));
  TimedRunner* timed = timed_owner.get();
  const EngineConfig ec = EngineConfigFor(options, config);
  auto engine = Engine::Create(ec, std::move(timed_owner));
  if (!engine.ok()) {
    spdlog::error("{}", std::string(engine.status().message()));
    return 1;
  }

  const int n = static_cast<int>(w.prompts.size());
  int64_t prompt_tokens = 0, expected_output = 0;
  const auto start = Clock::now();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < n; ++i) {
    SubmitParams p;
    p.prompt_ids = w.prompts[i];
    p.sampling.temperature = 0.0f;
    p.sampling.max_tokens = w.output_lens[i];
    p.sampling.ignore_eos = true;
    p.sampling.constraint = constraint;
    prompt_tokens += static_cast<int64_t>(p.prompt_ids.size());
    expected_output += w.output_lens[i];
    auto s = (*engine)->Submit(std::move(p));
    if (!s.ok()) {
      spdlog::error("request {} refused: {}", i, std::string(s.status().message()));
      return 1;
    }
    streams.push_back(*s);
  }
  int64_t output_tokens = 0;
  int finished = 0, errors = 0;
  for (auto& s : streams) {
    for (;;) {
      auto o = s->Pop(std::chrono::seconds(600));
      if (!o) {
        spdlog::error("request {} timed out", s->id());
        return 1;
      }
      output_tokens += static_cast<int64_t>(o->new_token_ids.size());
      if (o->finish_reason == FinishReason::kNone) continue;
      if (o->finish_reason == FinishReason::kError) ++errors;
      break;
    }
    ++finished;
    std::fprintf(stderr, "\rrequests finished: %d/%d", finished, n);
  }
  std::fprintf(stderr, "\n");
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  (*engine)->Shutdown();

  const Roofline roof = DecodeRoofline(config, options.device == "cuda" ? 2 : 4);
  std::vector<double> decode_ms;
  double batch_sum = 0, context_sum = 0, floor_sum_s = 0, decode_s = 0;
  for (const StepRecord& r : timed->steps()) {
    if (!r.decode_only) continue;
    decode_ms.push_back(r.seconds * 1e3);
    batch_sum += r.num_seqs;
    context_sum += static_cast<double>(r.context_tokens) / r.num_seqs;
    decode_s += r.seconds;
    if (copy_gbs > 0) {
      floor_sum_s +=
          roof.StepBytes(r.num_seqs, static_cast<double>(r.context_tokens)) / (copy_gbs * 1e9);
    }
  }
  const double steps = static_cast<double>(decode_ms.size());
  const double mean_ms = steps > 0 ? decode_s * 1e3 / steps : 0;
  nlohmann::ordered_json j = {
      {"device", options.device},
      {"tensor_parallel_size", options.tensor_parallel_size},
      {"model", config.Summary()},
      {"random_weights", options.random_weights},
      {"structured", structured},
      {"num_requests", n},
      {"prompt_tokens", prompt_tokens},
      {"output_tokens", output_tokens},
      {"expected_output_tokens", expected_output},
      {"errors", errors},
      {"elapsed_s", elapsed},
      {"requests_per_s", n / elapsed},
      {"output_tokens_per_s", output_tokens / elapsed},
      {"total_tokens_per_s", (prompt_tokens + output_tokens) / elapsed},
      {"decode_steps", decode_ms.size()},
      {"decode_output_tokens_per_s", decode_s > 0 ? batch_sum / decode_s : 0},
      {"mean_decode_step_ms", mean_ms},
      {"p50_decode_step_ms", Percentile(decode_ms, 0.5)},
      {"p99_decode_step_ms", Percentile(decode_ms, 0.99)},
      {"mean_decode_batch", steps > 0 ? batch_sum / steps : 0},
      {"mean_decode_context", steps > 0 ? context_sum / steps : 0},
      {"weight_bytes", roof.weight_bytes},
      {"expert_bytes", roof.expert_bytes},
      {"moe_layers", roof.moe_layers},
      {"active_experts_at_mean_batch",
       roof.ActiveExperts(static_cast<int>(std::lround(steps > 0 ? batch_sum / steps : 0)))},
      {"copy_bandwidth_gbs", copy_gbs},
      {"mean_decode_floor_ms", steps > 0 ? floor_sum_s * 1e3 / steps : 0},
      {"roofline_fraction", decode_s > 0 ? floor_sum_s / decode_s : 0},
      {"kv_blocks", kv_blocks},
      {"planned_kv_blocks", planned.ok() ? planned->num_kv_blocks : -1},
      {"memory_bytes",
       {{"weights", memory.weights},
        {"kv_cache", memory.kv_cache},
        {"activations", memory.activations},
        {"cuda_graphs", memory.cuda_graphs},
        {"device_total", memory.device_total},
        {"device_used", memory.device_used}}},
  };
  std::printf("%-28s %s\n", "device", options.device.c_str());
  std::printf("%-28s %s%s\n", "model", config.Summary().c_str(),
              options.random_weights ? " (random weights)" : "");
  std::printf("%-28s %d (%lld prompt, %lld output tokens)\n", "requests", n,
              static_cast<long long>(prompt_tokens), static_cast<long long>(output_tokens));
  std::printf("%-28s %.2f s\n", "elapsed", elapsed);
  std::printf("%-28s %.2f req/s, %.1f output tok/s, %.1f total tok/s\n", "throughput", n / elapsed,
              output_tokens / elapsed, (prompt_tokens + output_tokens) / elapsed);
  std::printf("%-28s %zu steps, mean batch %.1f, mean context %.0f\n", "decode", decode_ms.size(),
              j["mean_decode_batch"].get<double>(), j["mean_decode_context"].get<double>());
  std::printf("%-28s mean %.3f ms, p50 %.3f, p99 %.3f (%.1f output tok/s while decoding)\n",
              "decode step", mean_ms, j["p50_decode_step_ms"].get<double>(),
              j["p99_decode_step_ms"].get<double>(), j["decode_output_tokens_per_s"].get<double>());
  std::printf("%-28s %.3f ms (%.2f GB weights%s + KV at %.0f GB/s copy) -> %.3f of the roofline\n",
              "decode floor", j["mean_decode_floor_ms"].get<double>(), roof.weight_bytes / 1e9,
              roof.moe_layers > 0 ? " + the experts routed to" : "", copy_gbs,
              j["roofline_fraction"].get<double>());
  std::printf("%-28s %d allocated, %d planned (sluice plan)\n", "KV blocks", kv_blocks,
              j["planned_kv_blocks"].get<int>());
  std::printf("RESULT %s\n", j.dump().c_str());
  if (!out_path.empty()) std::ofstream(out_path) << j.dump(2) << "\n";
  return errors == 0 && output_tokens == expected_output ? 0 : 1;
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) { return sluice::Run(argc, argv); }
