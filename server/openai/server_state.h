// What the HTTP front shares with the serve command: the engine (null while loading),
// tokenizer, chat template, metrics, and the readiness flags.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "engine/core/engine.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/metrics.h"

namespace sluice {

class ChatTemplate;

struct ServerState {
  std::string served_model_name;
  std::atomic<bool> loaded{false};    // set once engine, tokenizer and template are in place
  std::atomic<bool> draining{false};  // set on SIGTERM
  std::atomic<int> active_requests{0};
  Engine* engine = nullptr;            // valid once loaded
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;  // null when the model has none
  int max_model_len = 0;
  int block_size = 0;        // of the KV cache
  std::string architecture;  // config.json's model_type
  std::unique_ptr<Metrics> metrics;
};

// Why the server takes no new request now: `reason` is the label counted in
// sluice_requests_rejected_total, `message` what the client is told.
struct Unavailable {
  std::string reason;  // "loading", "draining" or "unhealthy"
  std::string message;
};

// Nothing when the server takes new requests; otherwise why not, counted as a refusal
// for `protocol` ("http" or "grpc"). Both fronts answer with it: HTTP 503 + Retry-After,
// gRPC UNAVAILABLE.
std::optional<Unavailable> CheckAvailable(ServerState& state, const std::string& protocol);

}  // namespace sluice
