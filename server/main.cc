// `sluice`: the serving daemon's single binary.
#include <functional>

#include "CLI/CLI.hpp"
#include "server/commands.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  // Logs go to stderr; stdout carries only results (text, JSON lines).
  spdlog::set_default_logger(spdlog::stderr_color_mt("sluice"));
  CLI::App app{"Sluice: a high-throughput LLM serving daemon"};
  app.require_subcommand(1);
  std::function<int()> run;
  sluice::AddGenerateCommand(app, &run);
  sluice::AddServeCommand(app, &run);
  sluice::AddInspectCommands(app, &run);
  sluice::AddPlanCommand(app, &run);
  CLI11_PARSE(app, argc, argv);
  return run ? run() : 1;
}
