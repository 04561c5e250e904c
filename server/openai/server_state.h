// What the HTTP front shares with the serve command: the engine (null while loading),
// tokenizer, chat template, metrics, and the readiness flags.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "engine/api.h"
#include "net/cors.h"
#include "server/core/constraints.h"
#include "server/metrics.h"
#include "server/tokenizer/tokenizer.h"

namespace sluice {

class ChatTemplate;

struct ServerState {
  std::string served_model_name;
  std::atomic<bool> loaded{false};    // set once engine, tokenizer and template are in place
  std::atomic<bool> draining{false};  // set on SIGTERM
  std::atomic<int> active_requests{0};
  Engine* engine = nullptr;  // valid once loaded
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;  // null when the model has none
  int max_model_len = 0;
  int block_size = 0;        // of the KV cache
  std::string architecture;  // config.json's model_type
  std::unique_ptr<Metrics> metrics;
  http::CorsPolicy cors;                         // --allowed-origins
  std::unique_ptr<ConstraintCache> constraints;  // set once loaded
  std::string tool_call_parser;                  // --tool-call-parser; empty: none
};

// Why the server takes no new request now.
struct Unavailable {
  std::string reason;   // "loading", "draining" or "unhealthy": /ready's status and the
                        // label counted in sluice_requests_rejected_total
  std::string message;  // what a refused client is told
  std::string detail;   // the engine's own words when unhealthy; empty otherwise
};

// Nothing when the server takes new requests; otherwise why not. /ready, the HTTP API
// (503 + Retry-After) and gRPC (UNAVAILABLE) all decide with it.
std::optional<Unavailable> WhyUnavailable(const ServerState& state);

// WhyUnavailable, with a refusal counted for `protocol` ("http" or "grpc").
std::optional<Unavailable> CheckAvailable(ServerState& state, const std::string& protocol);

}  // namespace sluice
