#include "server/openai/server_state.h"

namespace sluice {

std::optional<Unavailable> WhyUnavailable(const ServerState& state) {
  if (!state.loaded.load()) return Unavailable{"loading", "the model is still loading", ""};
  if (state.draining.load()) return Unavailable{"draining", "the server is shutting down", ""};
  if (EngineHealth h = state.engine->Health(); !h.ready) {
    return Unavailable{"unhealthy", "the engine is unhealthy: " + h.reason, h.reason};
  }
  return std::nullopt;
}

std::optional<Unavailable> CheckAvailable(ServerState& state, const std::string& protocol) {
  std::optional<Unavailable> why = WhyUnavailable(state);
  if (why) state.metrics->Rejected(why->reason, protocol);
  return why;
}

}  // namespace sluice
