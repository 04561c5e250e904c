// A model as the fronts serve it: the tokenizer (which the engine never sees) and the
// engine, loaded from one directory.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/api.h"
#include "server/tokenizer/tokenizer.h"

namespace sluice {

struct ServingModel {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Engine> engine;
};

// Loads the tokenizer of options.model (the default model when empty), adds its
// end-of-sequence ids to the engine's, then loads the engine. Errors name the file.
absl::StatusOr<ServingModel> LoadServingModel(EngineOptions options);

}  // namespace sluice
