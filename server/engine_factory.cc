#include "server/engine_factory.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "engine/common/status_macros.h"
#include "engine/model/cpu_model.h"
#include "engine/runner/cpu_runner.h"
#include "server/commands.h"
#include "spdlog/spdlog.h"

namespace sluice {

std::string DefaultModelDir() {
  if (const char* env = std::getenv("SLUICE_MODEL"); env != nullptr && *env != '\0') return env;
  return SLUICE_DEFAULT_MODEL_DIR;
}

void AddEngineFlags(CLI::App* cmd, EngineOptions* o) {
  cmd->add_option("--model", o->model, "Model directory (default: the embedded tiny model)");
  cmd->add_option("--num-kv-blocks", o->num_kv_blocks, "KV cache blocks (default: from --kv-cache-gib)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--kv-cache-gib", o->kv_cache_gib, "KV cache memory on the CPU backend")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--block-size", o->block_size, "Tokens per KV block")->check(CLI::Range(1, 256));
  cmd->add_option("--max-num-seqs", o->max_num_seqs, "Requests running at once")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-num-batched-tokens", o->max_num_batched_tokens, "Token budget per step")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-waiting-requests", o->max_waiting_requests,
                  "Waiting requests before new ones are refused")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-waiting-tokens", o->max_waiting_tokens,
                  "Waiting prompt tokens before new requests are refused")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--slo-ttft-ms", o->slo_ttft_ms,
                  "TTFT SLO; requests predicted to miss it by the slack are refused (0: off)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("!--no-prefix-caching", o->enable_prefix_caching, "Disable prefix caching");
}

absl::StatusOr<LoadedEngine> LoadEngine(const EngineOptions& o) {
  LoadedEngine out;
  out.model_dir = o.model.empty() ? DefaultModelDir() : o.model;
  SLUICE_ASSIGN_OR_RETURN(out.tokenizer, Tokenizer::FromDir(out.model_dir));
  const auto start = std::chrono::steady_clock::now();
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<CpuModel> model,
                          CpuModel::Load(out.model_dir, [&](int done, int total) {
                            if (!o.quiet) spdlog::info("loading weights: layer {}/{}", done, total);
                          }));
  const ModelConfig& config = model->config();
  int num_blocks = o.num_kv_blocks;
  if (num_blocks == 0) {
    const double bytes_per_block = 2.0 * config.num_layers * o.block_size * config.num_kv_heads *
                                   config.head_dim * sizeof(float);
    num_blocks = std::max(1, static_cast<int>(o.kv_cache_gib * (1ull << 30) / bytes_per_block));
  }
  if (!o.quiet) {
    spdlog::info("{} loaded in {:.2f} s; KV cache {} blocks of {} tokens", config.Summary(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                 num_blocks, o.block_size);
  }
  EngineConfig ec;
  ec.scheduler.max_num_seqs = o.max_num_seqs;
  ec.scheduler.max_num_batched_tokens = o.max_num_batched_tokens;
  ec.scheduler.max_model_len = config.max_position_embeddings;
  ec.scheduler.enable_prefix_caching = o.enable_prefix_caching;
  ec.scheduler.eos_token_ids = config.eos_token_ids;
  for (int32_t id : out.tokenizer->eos_ids()) {
    if (std::find(ec.scheduler.eos_token_ids.begin(), ec.scheduler.eos_token_ids.end(), id) ==
        ec.scheduler.eos_token_ids.end()) {
      ec.scheduler.eos_token_ids.push_back(id);
    }
  }
  ec.max_waiting_requests = o.max_waiting_requests;
  ec.max_waiting_tokens = o.max_waiting_tokens;
  ec.slo_ttft_ms = o.slo_ttft_ms;
  auto runner = std::make_unique<CpuRunner>(std::move(model), num_blocks, o.block_size);
  SLUICE_ASSIGN_OR_RETURN(out.engine, Engine::Create(ec, std::move(runner)));
  return out;
}

}  // namespace sluice
