#include "server/openai/server_state.h"

namespace sluice {

std::optional<Unavailable> CheckAvailable(ServerState& state, const std::string& protocol) {
  std::optional<Unavailable> why;
  if (!state.loaded.load()) {
    why = Unavailable{"loading", "the model is still loading"};
  } else if (state.draining.load()) {
    why = Unavailable{"draining", "the server is shutting down"};
  } else if (EngineHealth h = state.engine->Health(); !h.ready) {
    why = Unavailable{"unhealthy", "the engine is unhealthy: " + h.reason};
  }
  if (why) state.metrics->Rejected(why->reason, protocol);
  return why;
}

}  // namespace sluice
