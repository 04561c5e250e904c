// `sluice serve`: the OpenAI-compatible HTTP server. The port opens before the model
// loads (liveness up, readiness 503 while loading); SIGTERM or SIGINT drains: readiness
// false at once, new requests 503, in-flight streams finish within --drain-timeout-s,
// then exit 0. --metrics-port adds a listener for /metrics, /health and /ready alone, so
// that a pod can keep the API on loopback behind its gateway and still be probed and
// scraped.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "engine/flags.h"
#include "net/heap_release.h"
#include "net/http_server.h"
#include "server/chat/chat_template.h"
#include "server/commands.h"
#include "server/core/serving_model.h"
#include "server/grpc/grpc_server.h"
#include "server/openai/api.h"
#include "server/openai/server_state.h"
#include "spdlog/spdlog.h"

namespace sluice {
namespace {

struct ServeFlags {
  EngineOptions engine;
  std::string host = "0.0.0.0";
  int port = 8000;
  std::string served_model_name;
  double slo_tpot_ms = 100.0;
  double cost_per_hour = 0.0;    // USD; 0: unset
  std::string metrics_compat;    // "vllm": also the vllm: names
  std::string allowed_origins;   // CORS: comma-separated origins or "*"; empty: none
  std::string tool_call_parser;  // hermes, llama3_json, mistral; empty: none
  double drain_timeout_s = 30.0;
  size_t max_body_bytes = 1 << 20;
  int io_threads = 2;
  int grpc_port = 50051;     // -1: no gRPC
  std::string grpc_host;     // empty: --host
  int metrics_port = -1;     // -1: metrics on the API port only
  std::string metrics_host;  // empty: --host
};

int RunServe(ServeFlags f) {
  // Signals are taken by sigwait on this thread only; every thread started
  // below inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ServerState state;
  absl::StatusOr<http::CorsPolicy> cors = http::CorsPolicy::Parse(f.allowed_origins);
  if (!cors.ok()) {
    spdlog::error("{}", std::string(cors.status().message()));
    return 2;
  }
  state.cors = *std::move(cors);
  state.tool_call_parser = f.tool_call_parser;
  state.metrics = std::make_unique<Metrics>(f.engine.slo_ttft_ms, f.slo_tpot_ms, f.cost_per_hour);
  Metrics* metrics = state.metrics.get();
  f.engine.on_step = [metrics](const StepSample& step) { metrics->ObserveStep(step); };
  openai::Api api(&state);
  http::ServerOptions api_options;
  api_options.host = f.host;
  api_options.port = f.port;
  api_options.num_threads = f.io_threads;
  api_options.max_body_bytes = f.max_body_bytes;
  http::Server server(api_options,
                      [&api](const http::Request& r, std::shared_ptr<http::ResponseWriter> w) {
                        api.Handle(r, std::move(w));
                      });
  if (absl::Status s = server.Start(); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 2;
  }
  spdlog::info("listening on {}:{} (ready once the model is loaded)", f.host, server.port());
  const std::string metrics_host = f.metrics_host.empty() ? f.host : f.metrics_host;
  std::unique_ptr<http::Server> metrics_server;
  if (f.metrics_port >= 0) {
    http::ServerOptions metrics_options;
    metrics_options.host = metrics_host;
    metrics_options.port = f.metrics_port;
    metrics_options.num_threads = 1;
    metrics_options.max_body_bytes = 4096;
    metrics_server = std::make_unique<http::Server>(
        metrics_options, [&api](const http::Request& r, std::shared_ptr<http::ResponseWriter> w) {
          api.HandleAdmin(r, std::move(w));
        });
    if (absl::Status s = metrics_server->Start(); !s.ok()) {
      spdlog::error("metrics port: {}", std::string(s.message()));
      server.Stop();
      return 2;
    }
    spdlog::info("metrics, health and readiness on {}:{}", metrics_host, metrics_server->port());
  }
  const std::string grpc_host = f.grpc_host.empty() ? f.host : f.grpc_host;
  grpcfront::GrpcServer grpc_server(&state);
  if (f.grpc_port >= 0) {
    if (absl::Status s = grpc_server.Start(grpc_host, f.grpc_port); !s.ok()) {
      spdlog::error("{}", std::string(s.message()));
      server.Stop();
      if (metrics_server) metrics_server->Stop();
      return 2;
    }
    spdlog::info("gRPC on {}:{} (health NOT_SERVING until the model is loaded)", grpc_host,
                 grpc_server.port());
  }

  auto loaded = LoadServingModel(f.engine);
  if (!loaded.ok()) {
    spdlog::error("cannot load model: {}", std::string(loaded.status().message()));
    server.Stop();
    if (metrics_server) metrics_server->Stop();
    return 2;
  }
  std::unique_ptr<ChatTemplate> chat_template;
  if (!loaded->tokenizer->chat_template().empty()) {
    auto parsed = ChatTemplate::Parse(loaded->tokenizer->chat_template());
    if (!parsed.ok()) {
      spdlog::warn("chat template not usable ({}); /v1/chat/completions answers 400",
                   std::string(parsed.status().message()));
    } else {
      chat_template = std::move(*parsed);
    }
  }
  state.served_model_name =
      f.served_model_name.empty()
          ? std::filesystem::path(loaded->engine->model().model_dir).filename().string()
          : f.served_model_name;
  if (f.metrics_compat == "vllm") state.metrics->EnableVllmCompat(state.served_model_name);
  state.engine = loaded->engine.get();
  state.tokenizer = loaded->tokenizer.get();
  state.constraints = std::make_unique<ConstraintCache>(
      GrammarVocabulary(*loaded->tokenizer, loaded->engine->model().vocab_size,
                        loaded->engine->model().eos_token_ids));
  state.chat_template = chat_template.get();
  const ModelInfo& model = loaded->engine->model();
  state.max_model_len = model.max_model_len;
  state.block_size = model.block_size;
  state.architecture = model.architecture;
  state.metrics->SetCacheConfig(model.block_size, model.num_kv_blocks);
  state.loaded.store(true);
  grpc_server.SetServing(true);
  spdlog::info("serving '{}' on http://{}:{}", state.served_model_name, f.host, server.port());

  // Bursts of requests leave freed buffers in the I/O threads' malloc arenas.
  PeriodicHeapRelease heap_release(std::chrono::seconds(10));
  // Until a signal: the gRPC health service follows the engine's readiness, as /ready
  // does, checked every second.
  int sig = -1;
  bool serving = true;
  while (sig < 0) {
    const timespec second{1, 0};
    sig = sigtimedwait(&signals, nullptr, &second);
    const EngineHealth h = loaded->engine->Health();
    if (h.ready != serving) {
      serving = h.ready;
      grpc_server.SetServing(serving);
      if (serving) {
        spdlog::info("engine healthy again: ready");
      } else {
        spdlog::error("engine unhealthy, not ready{}: {}", h.live ? "" : ", not live", h.reason);
      }
    }
  }
  spdlog::info("signal {}: draining (timeout {} s)", sig, f.drain_timeout_s);
  state.draining.store(true);
  grpc_server.SetServing(false);
  loaded->engine->StartDrain();
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(f.drain_timeout_s * 1000));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (!loaded->engine->WaitIdle(timeout)) spdlog::warn("drain timed out; aborting what is left");
  // Let finished streams flush their last bytes.
  while (state.active_requests.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  server.StopAccepting();
  grpc_server.Shutdown(1.0);
  loaded->engine->Shutdown();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server.Stop();
  if (metrics_server) metrics_server->Stop();
  spdlog::info("drained; exiting");
  return 0;
}

}  // namespace

void AddServeCommand(CLI::App& app, std::function<int()>* run) {
  auto f = std::make_shared<ServeFlags>();
  f->engine.slo_ttft_ms = 1000.0;
  CLI::App* cmd = app.add_subcommand("serve", "Serve the OpenAI-compatible HTTP API");
  AddEngineFlags(cmd, &f->engine);
  cmd->add_option("--host", f->host, "Address to listen on");
  cmd->add_option("--port", f->port, "Port (0 picks a free one)")->check(CLI::Range(0, 65535));
  cmd->add_option("--served-model-name", f->served_model_name,
                  "Model name in the API (default: the model directory's name)");
  cmd->add_option("--slo-tpot-ms", f->slo_tpot_ms, "TPOT SLO for Goodput")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--metrics-compat", f->metrics_compat,
                  "vllm: also export the vllm: metric names vLLM dashboards, the Gateway API "
                  "Inference Extension and KEDA examples query")
      ->check(CLI::IsMember({"vllm"}));
  cmd->add_option("--tool-call-parser", f->tool_call_parser,
                  "How the model writes tool calls, for tool_choice auto (and the format "
                  "required calls are forced into): hermes (<tool_call> blocks, Qwen2.5 and "
                  "Qwen3), llama3_json, mistral")
      ->check(CLI::IsMember({"hermes", "llama3_json", "mistral"}));
  cmd->add_option("--allowed-origins", f->allowed_origins,
                  "Origins browsers may call the API from (CORS), comma-separated "
                  "(https://app.example,http://localhost:3000), or * for any; default none");
  cmd->add_option("--cost-per-hour", f->cost_per_hour,
                  "The replica's price in USD per hour, whatever its hardware, for "
                  "sluice_cost_usd_total (0: unset)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--drain-timeout-s", f->drain_timeout_s,
                  "How long in-flight requests may run after SIGTERM")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-body-bytes", f->max_body_bytes, "Largest request body (413 above)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--io-threads", f->io_threads, "HTTP I/O threads")->check(CLI::Range(1, 64));
  cmd->add_option("--grpc-port", f->grpc_port,
                  "gRPC port (sluice.v1.Generation, health, reflection); 0 "
                  "picks one, -1 none")
      ->check(CLI::Range(-1, 65535));
  cmd->add_option("--grpc-host", f->grpc_host, "Address of the gRPC port (default: --host)");
  cmd->add_option("--metrics-port", f->metrics_port,
                  "Port of /metrics, /health and /ready alone (0 picks one, -1 "
                  "none: they stay "
                  "on the API port as well)")
      ->check(CLI::Range(-1, 65535));
  cmd->add_option("--metrics-host", f->metrics_host,
                  "Address of the metrics port (default: --host)");
  cmd->callback([f, run] { *run = [f] { return RunServe(*f); }; });
}

}  // namespace sluice
