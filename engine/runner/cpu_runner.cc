#include "engine/runner/cpu_runner.h"

#include "absl/status/status.h"
#include "engine/common/status_macros.h"
#include "engine/runner/host_sampling.h"

namespace sluice {

CpuRunner::CpuRunner(std::shared_ptr<CpuModel> model, int num_blocks, int block_size)
    : model_(std::move(model)),
      cache_(model_->config(), num_blocks, block_size),
      table_(block_size) {}

absl::StatusOr<StepResult> CpuRunner::Execute(const SchedulerOutput& output) {
  table_.Apply(output);
  SLUICE_ASSIGN_OR_RETURN(ForwardBatch batch, table_.Build(output));
  SLUICE_RETURN_IF_ERROR(model_->Forward(batch, cache_, logits_));
  const int vocab = model_->config().vocab_size;
  StepResult result;
  size_t row = 0;
  for (RequestTable::Seq* s : table_.Advance(output)) {
    float* logits = logits_.data() + row * vocab;
    ++row;
    // Logprobs are reported for the model's own distribution, before penalties.
    const bool want_logprobs = s->params.logprobs >= 0;
    std::vector<float> raw;
    if (want_logprobs) raw.assign(logits, logits + vocab);
    ApplyPenalties(s->params, s->token_ids, s->num_output_tokens, logits, vocab);
    const kernels::SamplingRow sampling = RequestTable::SamplingFor(*s);
    int32_t id = 0;
    const kernels::Status k = kernels::cpu::Sample(&id, logits, &sampling, 1, vocab);
    if (!k.ok()) return absl::InternalError(k.message());
    s->token_ids.push_back(id);
    ++s->num_output_tokens;
    result.sampled.push_back(id);
    result.logprobs.push_back(want_logprobs ? Logprobs(raw.data(), vocab, id, s->params.logprobs)
                                            : TokenLogprobs{});
  }
  return result;
}

}  // namespace sluice
