// Builds an engine on the CPU or CUDA backend for a model directory, from the
// command-line options every subcommand shares.
#pragma once

#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "engine/core/engine.h"
#include "engine/model/config.h"
#include "engine/runner/runner.h"
#include "engine/tokenizer/tokenizer.h"

namespace sluice {

struct EngineOptions {
  std::string model;  // empty: the embedded default model
  std::string device = "cpu";  // cpu or cuda
  bool random_weights = false;  // config.json only, weights drawn from random_seed
  uint64_t random_seed = 0;
  double gpu_memory_utilization = 0.9;  // --device cuda
  bool enforce_eager = false;           // --device cuda: no CUDA graphs
  bool tune_gemms = false;              // --device cuda: time GEMM algorithms at load
  int num_kv_blocks = 0;  // 0: sized from --kv-cache-gib (cpu) or free memory (cuda)
  double kv_cache_gib = 1.0;
  int block_size = 16;
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  int max_waiting_requests = 256;
  int64_t max_waiting_tokens = 1 << 18;
  double slo_ttft_ms = 0.0;
  bool enable_prefix_caching = true;
  bool quiet = false;  // no progress logs
  double step_timeout_s = 300.0;  // a step running longer fails liveness
  double unready_grace_s = 30.0;  // unready from failing steps this long fails liveness
  std::string inject_step_faults;  // testing: FaultInjectingRunner spec; empty: none
};

// Registers the shared engine flags on `cmd`.
void AddEngineFlags(CLI::App* cmd, EngineOptions* options);

struct LoadedEngine {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Engine> engine;
  std::string model_dir;
  ModelConfig config;
  int block_size = 0;
};

// Loads tokenizer and model and starts the engine. Errors name the file at fault.
absl::StatusOr<LoadedEngine> LoadEngine(const EngineOptions& options);

// The engine's configuration from the shared flags and the model's config (end-of-sequence
// ids from config.json; LoadEngine adds the tokenizer's).
EngineConfig EngineConfigFor(const EngineOptions& options, const ModelConfig& config);

// The runner alone (no tokenizer, no engine) for `model_dir`, on the device the options
// name; `config` receives the model's config. For benchmarks that drive the runner.
absl::StatusOr<std::unique_ptr<Runner>> CreateRunner(const EngineOptions& options,
                                                     const std::string& model_dir,
                                                     ModelConfig* config);

}  // namespace sluice
