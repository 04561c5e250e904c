// Subcommands of the `sluice` binary. Each registers its flags on the CLI11 app and
// returns the exit code when run.
#pragma once

#include <functional>

#include "CLI/CLI.hpp"

namespace sluice {

// Adds `generate` to `app`; `*run` is set to its entry point when it is chosen.
void AddGenerateCommand(CLI::App& app, std::function<int()>* run);

// Adds `serve` (the HTTP server) to `app`.
void AddServeCommand(CLI::App& app, std::function<int()>* run);

// Adds `plan`: memory, KV capacity, rooflines and cost for a model on a device.
void AddPlanCommand(CLI::App& app, std::function<int()>* run);

// Adds `tokenize` and `chat-template`, for inspecting prompts.
void AddInspectCommands(CLI::App& app, std::function<int()>* run);

}  // namespace sluice
