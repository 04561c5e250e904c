// How an engine builds itself for a model directory: the runner on the chosen backend,
// the KV cache sized to the memory given, every limit taken from one EngineOptions.
// Engine::Load (engine/api.h) is the usual way in; CreateRunner is for benchmarks that
// drive a runner of their own.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/api.h"
#include "engine/model/config.h"
#include "engine/runner/runner.h"

namespace sluice {

// The engine's limits from the options and the model's config (end-of-sequence ids from
// config.json and options.extra_eos_token_ids).
EngineConfig EngineConfigFor(const EngineOptions& options, const ModelConfig& config);

// The runner alone for `model_dir` on the device the options name; `config` receives the
// model's config. Wrapped in the fault injector when options.inject_step_faults asks.
absl::StatusOr<std::unique_ptr<Runner>> CreateRunner(const EngineOptions& options,
                                                     const std::string& model_dir,
                                                     ModelConfig* config);

}  // namespace sluice
