// The engine's command-line flags (CLI11), for every binary that builds an engine:
// `sluice serve`, `sluice generate`, the benchmarks.
#pragma once

#include "CLI/CLI.hpp"
#include "engine/api.h"

namespace sluice {

// Registers the engine's flags on `cmd`, bound to `options`.
void AddEngineFlags(CLI::App* cmd, EngineOptions* options);

}  // namespace sluice
