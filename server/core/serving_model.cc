#include "server/core/serving_model.h"

#include "common/status_macros.h"

namespace sluice {

absl::StatusOr<ServingModel> LoadServingModel(EngineOptions options) {
  if (options.model.empty()) options.model = DefaultModelDir();
  ServingModel m;
  SLUICE_ASSIGN_OR_RETURN(m.tokenizer, Tokenizer::FromDir(options.model));
  const std::vector<int32_t>& eos = m.tokenizer->eos_ids();
  options.extra_eos_token_ids.insert(options.extra_eos_token_ids.end(), eos.begin(), eos.end());
  SLUICE_ASSIGN_OR_RETURN(m.engine, Engine::Load(options));
  return m;
}

}  // namespace sluice
