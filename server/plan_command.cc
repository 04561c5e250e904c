// `sluice plan`: capacity planning without a GPU. From a model's config.json and a
// device's figures it prints the memory plan, the KV tokens and sequences that fit, the
// roofline floors of a decode step, prefill time, the throughput they bound, and with a
// price the cost per million tokens. The KV blocks it plans are the ones `sluice serve`
// allocates for the same settings (engine/capacity.h is the one formula).
#include <cstdio>
#include <functional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "engine/api.h"
#include "engine/capacity.h"
#include "engine/model/config.h"
#include "nlohmann/json.hpp"
#include "server/commands.h"
#include "spdlog/spdlog.h"

namespace sluice {
namespace {

struct PlanFlags {
  std::string model;  // a model directory or its config.json
  std::string device = "H100 SXM";
  double gpu_memory_gib = 0, bandwidth_gbps = 0, bf16_tflops = 0;  // override the device's
  std::string dtype = "bfloat16";
  bool json = false;
  PlanOptions options;
};

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

nlohmann::ordered_json ToJson(const CapacityPlan& p, const PlanFlags& f, const ModelConfig& c) {
  const PlanOptions& o = f.options;
  nlohmann::ordered_json j = {
      {"model", c.Summary()},
      {"backend", o.backend},
      {"dtype", o.backend == "cpu" ? "float32" : f.dtype},
      {"tensor_parallel_size", o.tensor_parallel_size},
      {"memory_budget_bytes", p.memory_bytes},
      {"weight_bytes", p.weight_bytes},
      {"activation_bytes", p.activation_bytes},
      {"reserved_bytes", p.reserved_bytes},
      {"kv_bytes_per_block", p.kv_bytes_per_block},
      {"num_kv_blocks", p.num_kv_blocks},
      {"block_size", o.block_size},
      {"kv_cache_bytes", p.kv_bytes},
      {"left_bytes", p.left_bytes},
      {"kv_tokens", p.kv_tokens},
      {"max_model_len", c.max_position_embeddings},
      {"max_len_sequences", p.max_len_sequences},
      {"input_len", o.input_len},
      {"output_len", o.output_len},
      {"workload_sequences", p.workload_sequences},
  };
  if (o.backend == "cuda") {
    j["device"] = {{"name", o.device.name},
                   {"memory_gib", o.device.memory_gib},
                   {"bandwidth_gbps", o.device.bandwidth_gbps},
                   {"bf16_tflops", o.device.bf16_tflops},
                   {"source", o.device.source}};
    j["decode_floor_batch1_ms"] = p.decode_floor_batch1_s * 1e3;
    j["decode_floor_max_batch_ms"] = p.decode_floor_max_batch_s * 1e3;
    j["prefill_ms_per_1k_tokens"] = p.prefill_s_per_1k * 1e3;
    j["max_output_tokens_per_s"] = p.max_output_tokens_per_s;
    if (o.cost_per_hour > 0) {
      j["cost_per_hour_usd"] = o.cost_per_hour;
      j["usd_per_million_output_tokens"] = p.cost_per_million_output_tokens;
      j["usd_per_million_input_tokens"] = p.cost_per_million_input_tokens;
    }
  }
  return j;
}

void PrintText(const CapacityPlan& p, const PlanFlags& f, const ModelConfig& c) {
  const PlanOptions& o = f.options;
  const bool cpu = o.backend == "cpu";
  std::printf("model       %s\n", c.Summary().c_str());
  if (cpu) {
    std::printf("backend     cpu, float32, --kv-cache-gib %.2f, tensor parallel %d\n",
                o.kv_cache_gib, o.tensor_parallel_size);
  } else {
    std::printf("device      %s: %.1f GiB, %.0f GB/s, %.0f bf16 TFLOPS (%s)\n",
                o.device.name.c_str(), o.device.memory_gib, o.device.bandwidth_gbps,
                o.device.bf16_tflops, o.device.source.c_str());
    std::printf("            %s, tensor parallel %d, --gpu-memory-utilization %.2f\n",
                f.dtype.c_str(), o.tensor_parallel_size, o.gpu_memory_utilization);
  }
  std::printf("\nmemory%s\n", cpu ? " (host)" : " per GPU");
  if (!cpu) std::printf("  budget        %8.2f GiB\n", p.memory_bytes / kGiB);
  std::printf("  weights       %8.2f GiB\n", p.weight_bytes / kGiB);
  std::printf("  activations   %8.2f GiB\n", p.activation_bytes / kGiB);
  if (!cpu)
    std::printf("  reserved      %8.2f GiB  (driver context, graphs, headroom)\n",
                p.reserved_bytes / kGiB);
  std::printf("  KV cache      %8.2f GiB  %d blocks of %d tokens, %.2f MiB each\n",
              p.kv_bytes / kGiB, p.num_kv_blocks, o.block_size,
              p.kv_bytes_per_block / (1024.0 * 1024.0));
  if (!cpu) std::printf("  left          %8.2f GiB\n", p.left_bytes / kGiB);
  std::printf("\ncapacity\n");
  std::printf("  KV tokens     %lld\n", static_cast<long long>(p.kv_tokens));
  std::printf("  sequences     %d at the context window (%d), %d of %d + %d tokens (max %d)\n",
              p.max_len_sequences, c.max_position_embeddings, p.workload_sequences, o.input_len,
              o.output_len, o.max_num_seqs);
  if (cpu) return;
  std::printf("\nroofline (weights + KV bytes over bandwidth%s; FLOPs over compute)\n",
              c.num_experts > 0 ? "; of the experts, those routed to under uniform routing" : "");
  std::printf("  decode step   %.2f ms at batch 1, %.2f ms at batch %d (context %d)\n",
              p.decode_floor_batch1_s * 1e3, p.decode_floor_max_batch_s * 1e3,
              std::max(p.workload_sequences, 1), o.input_len + o.output_len / 2);
  std::printf("  prefill       %.2f ms per 1k prompt tokens\n", p.prefill_s_per_1k * 1e3);
  std::printf("  throughput    %.0f output tok/s at most\n", p.max_output_tokens_per_s);
  if (o.cost_per_hour > 0) {
    std::printf("\ncost at $%.2f/hour\n", o.cost_per_hour);
    std::printf("  $%.4f per 1M output tokens, $%.4f per 1M input tokens (at the floors)\n",
                p.cost_per_million_output_tokens, p.cost_per_million_input_tokens);
  }
}

int RunPlan(PlanFlags f) {
  std::string dir = f.model.empty() ? DefaultModelDir() : f.model;
  if (dir.size() > 12 && dir.ends_with("/config.json")) dir.resize(dir.size() - 12);
  if (dir == "config.json") dir = ".";
  auto config = LoadModelConfig(dir);
  if (!config.ok()) {
    spdlog::error("{}", std::string(config.status().message()));
    return 2;
  }
  PlanOptions& o = f.options;
  if (o.backend == "cuda") {
    if (const DeviceSpec* d = FindDevice(f.device)) {
      o.device = *d;
    } else if (f.gpu_memory_gib <= 0) {
      std::string names;
      for (const DeviceSpec& d : KnownDevices()) names += (names.empty() ? "" : ", ") + d.name;
      spdlog::error(
          "--device {}: not one of {}; or give --gpu-memory-gib, "
          "--memory-bandwidth-gbps and --bf16-tflops",
          f.device, names);
      return 2;
    } else {
      o.device = {f.device, 0, 0, 0, "given on the command line"};
    }
    if (f.gpu_memory_gib > 0) o.device.memory_gib = f.gpu_memory_gib;
    if (f.bandwidth_gbps > 0) o.device.bandwidth_gbps = f.bandwidth_gbps;
    if (f.bf16_tflops > 0) o.device.bf16_tflops = f.bf16_tflops;
    if (f.gpu_memory_gib > 0 || f.bandwidth_gbps > 0 || f.bf16_tflops > 0) {
      o.device.source += "; overridden on the command line";
    }
    o.bytes_per_elem = DtypeBytes(f.dtype);
    if (o.bytes_per_elem == 0) {
      spdlog::error("--dtype {}: bfloat16, float16, float32 or fp8", f.dtype);
      return 2;
    }
  }
  auto plan = PlanCapacity(*config, o);
  if (!plan.ok()) {
    spdlog::error("{}", std::string(plan.status().message()));
    return 2;
  }
  if (f.json) {
    std::printf("%s\n", ToJson(*plan, f, *config).dump(2).c_str());
  } else {
    PrintText(*plan, f, *config);
  }
  return 0;
}

}  // namespace

void AddPlanCommand(CLI::App& app, std::function<int()>* run) {
  auto f = std::make_shared<PlanFlags>();
  CLI::App* cmd = app.add_subcommand(
      "plan", "Plan capacity before deploying: memory, KV capacity, rooflines and cost");
  PlanOptions& o = f->options;
  cmd->add_option("--model", f->model,
                  "Model directory or its config.json (default: the embedded tiny model); only "
                  "config.json is read, so shapes without weights plan too");
  cmd->add_option("--backend", o.backend, "cuda (bf16 on GPUs) or cpu (fp32, as `--device cpu`)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--device", f->device,
                  "GPU: H100 SXM, H200, A100 80GB or L40S (datasheet figures), or a name for "
                  "the figures given below");
  cmd->add_option("--gpu-memory-gib", f->gpu_memory_gib, "GPU memory (overrides the device's)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--memory-bandwidth-gbps", f->bandwidth_gbps,
                  "Memory bandwidth in GB/s (overrides the device's; the achieved copy "
                  "bandwidth gives achievable floors)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--bf16-tflops", f->bf16_tflops, "Dense bf16 TFLOPS (overrides the device's)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--gpu-memory-utilization", o.gpu_memory_utilization,
                  "Fraction of GPU memory the engine may use, as `sluice serve`")
      ->check(CLI::Range(0.05, 1.0));
  cmd->add_option("--tensor-parallel-size", o.tensor_parallel_size,
                  "Ranks one replica spans (GPUs; threads on the CPU backend)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--dtype", f->dtype, "Weights and KV cache: bfloat16, float16, float32 or fp8");
  cmd->add_option("--kv-cache-gib", o.kv_cache_gib, "--backend cpu: KV cache memory, as serve")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--num-kv-blocks", o.num_kv_blocks, "KV blocks (default: what memory holds)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--block-size", o.block_size, "Tokens per KV block")->check(CLI::Range(1, 256));
  cmd->add_option("--max-num-seqs", o.max_num_seqs, "Requests running at once, as serve")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-num-batched-tokens", o.max_num_batched_tokens,
                  "Token budget per step, as serve")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--input-len", o.input_len, "Prompt tokens per request")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--output-len", o.output_len, "Generated tokens per request")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--cost-per-hour", o.cost_per_hour,
                  "The replica's price in USD per hour: cost per million tokens")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--json", f->json, "Print the plan as JSON");
  cmd->callback([f, run] { *run = [f] { return RunPlan(*f); }; });
}

}  // namespace sluice
