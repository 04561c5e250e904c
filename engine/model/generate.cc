#include "engine/model/generate.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace sluice {
namespace {

// A batch of one sequence whose tokens sit in blocks 0, 1, 2, ... of the cache.
ForwardBatch OneSequence(std::span<const int32_t> ids, int first_pos, int num_blocks) {
  ForwardBatch b;
  const int n = static_cast<int>(ids.size());
  b.input_ids.assign(ids.begin(), ids.end());
  b.positions.resize(n);
  std::iota(b.positions.begin(), b.positions.end(), first_pos);
  b.slot_mapping.assign(b.positions.begin(), b.positions.end());
  b.cu_seqlens_q = {0, n};
  b.seq_lens = {first_pos + n};
  b.max_blocks_per_seq = num_blocks;
  b.block_tables.resize(num_blocks);
  std::iota(b.block_tables.begin(), b.block_tables.end(), 0);
  b.logits_rows = {n - 1};
  return b;
}

using ForwardFn = std::function<absl::Status(const ForwardBatch&, std::vector<float>&)>;
// Blocks the sequence needs, or an error.
using CacheFn = std::function<absl::Status(int num_blocks)>;

absl::StatusOr<GenerateResult> Run(const ModelConfig& c, const ForwardFn& forward,
                                   const CacheFn& make_cache, std::span<const int32_t> prompt,
                                   const GenerateOptions& options, const TokenObserver& on_token,
                                   const LogitsObserver& on_logits) {
  if (prompt.empty()) return absl::InvalidArgumentError("prompt is empty");
  const int prompt_len = static_cast<int>(prompt.size());
  if (prompt_len >= c.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt has ", prompt_len, " tokens; the context window is ", c.max_position_embeddings));
  }
  const int max_new = std::min(options.max_tokens, c.max_position_embeddings - prompt_len);
  const int total = prompt_len + max_new;
  const int num_blocks = (total + options.block_size - 1) / options.block_size;
  SLUICE_RETURN_IF_ERROR(make_cache(num_blocks));

  kernels::SamplingRow row;
  row.temperature = options.temperature;
  row.top_k = options.top_k;
  row.top_p = options.top_p;
  row.min_p = options.min_p;
  row.seed = options.seed;

  GenerateResult result;
  result.finish_reason = "length";
  std::vector<float> logits;
  std::vector<int32_t> step_ids(prompt.begin(), prompt.end());
  int pos = 0;
  for (int step = 0; step < max_new; ++step) {
    ForwardBatch batch = OneSequence(step_ids, pos, num_blocks);
    SLUICE_RETURN_IF_ERROR(forward(batch, logits));
    if (on_logits) on_logits(step, logits);
    pos += static_cast<int>(step_ids.size());
    row.offset = static_cast<uint64_t>(step);
    int32_t next = 0;
    kernels::Status s = kernels::cpu::Sample(&next, logits.data(), &row, 1, c.vocab_size);
    if (!s.ok()) return absl::InternalError(s.message());
    result.output_ids.push_back(next);
    if (on_token) on_token(next);
    const bool is_eos =
        std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), next) != c.eos_token_ids.end();
    if (is_eos && !options.ignore_eos) {
      result.finish_reason = "stop";
      break;
    }
    step_ids = {next};
  }
  return result;
}

}  // namespace

absl::StatusOr<GenerateResult> Generate(CpuModel& model, std::span<const int32_t> prompt,
                                        const GenerateOptions& options,
                                        const TokenObserver& on_token,
                                        const LogitsObserver& on_logits) {
  std::unique_ptr<CpuKvCache> cache;
  auto make_cache = [&](int num_blocks) {
    cache = std::make_unique<CpuKvCache>(model.local_config(), num_blocks, options.block_size);
    return absl::OkStatus();
  };
  auto forward = [&](const ForwardBatch& b, std::vector<float>& logits) {
    return model.Forward(b, *cache, logits);
  };
  return Run(model.config(), forward, make_cache, prompt, options, on_token, on_logits);
}

absl::StatusOr<GenerateResult> Generate(CpuModelGroup& group, std::span<const int32_t> prompt,
                                        const GenerateOptions& options,
                                        const TokenObserver& on_token,
                                        const LogitsObserver& on_logits) {
  auto check_cache = [&](int num_blocks) {
    const kernels::KvCacheShape& s = group.cache_shape();
    if (s.block_size != options.block_size || s.num_blocks < num_blocks) {
      return absl::InvalidArgumentError(absl::StrCat(
          "generate: the group's caches hold ", s.num_blocks, " blocks of ", s.block_size,
          " tokens; this run needs ", num_blocks, " of ", options.block_size));
    }
    return absl::OkStatus();
  };
  auto forward = [&](const ForwardBatch& b, std::vector<float>& logits) {
    return group.Forward(b, logits);
  };
  return Run(group.config(), forward, check_cache, prompt, options, on_token, on_logits);
}

}  // namespace sluice
