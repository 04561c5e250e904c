#include "sluice/kernels/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "sluice/kernels/philox.h"

namespace sluice::kernels::cpu {
namespace {

int32_t Argmax(const float* logits, int vocab) {
  int32_t best = 0;
  for (int i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

}  // namespace

Status SamplingProbs(float* probs, const float* logits, const SamplingRow& row, int vocab) {
  if (vocab <= 0) return Status::InvalidArgument("sampling: vocab must be positive");
  if (!(row.temperature > 0.0f)) {
    std::fill(probs, probs + vocab, 0.0f);
    probs[Argmax(logits, vocab)] = 1.0f;
    return Status::Ok();
  }
  // Softmax of logits / temperature.
  float max_logit = logits[0];
  for (int i = 1; i < vocab; ++i) max_logit = std::max(max_logit, logits[i]);
  double total = 0.0;
  for (int i = 0; i < vocab; ++i) {
    probs[i] = std::exp((logits[i] - max_logit) / row.temperature);
    total += probs[i];
  }
  for (int i = 0; i < vocab; ++i) probs[i] = static_cast<float>(probs[i] / total);

  // Rank tokens by probability (ties: lower id first), then keep a prefix of that order.
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return probs[a] > probs[b]; });
  int keep = vocab;
  if (row.top_k > 0 && row.top_k < vocab) keep = row.top_k;
  if (row.top_p < 1.0f) {
    // Of the distribution renormalised over what top-k kept (as transformers and vLLM
    // apply them in turn): the smallest prefix holding top_p of the kept mass.
    double kept = 0.0;
    for (int i = 0; i < keep; ++i) kept += probs[order[i]];
    double mass = 0.0;
    for (int i = 0; i < keep; ++i) {
      mass += probs[order[i]];
      if (mass >= row.top_p * kept) {
        keep = i + 1;
        break;
      }
    }
  }
  if (row.min_p > 0.0f) {
    const float threshold = row.min_p * probs[order[0]];
    int i = 1;
    while (i < keep && probs[order[i]] >= threshold) ++i;
    keep = i;
  }
  double kept_mass = 0.0;
  for (int i = 0; i < keep; ++i) kept_mass += probs[order[i]];
  std::vector<float> kept(keep);
  for (int i = 0; i < keep; ++i) kept[i] = static_cast<float>(probs[order[i]] / kept_mass);
  std::fill(probs, probs + vocab, 0.0f);
  for (int i = 0; i < keep; ++i) probs[order[i]] = kept[i];
  return Status::Ok();
}

Status Sample(int32_t* out_ids, const float* logits, const SamplingRow* rows, int num_rows,
              int vocab) {
  std::vector<float> probs(vocab);
  for (int r = 0; r < num_rows; ++r) {
    const float* row_logits = logits + int64_t{r} * vocab;
    if (!(rows[r].temperature > 0.0f)) {
      out_ids[r] = Argmax(row_logits, vocab);
      continue;
    }
    if (Status s = SamplingProbs(probs.data(), row_logits, rows[r], vocab); !s.ok()) return s;
    // Inverse CDF over token ids in ascending order.
    const float u = PhiloxUniform(rows[r].seed, rows[r].offset);
    double cdf = 0.0;
    int32_t chosen = -1;
    for (int i = 0; i < vocab; ++i) {
      if (probs[i] <= 0.0f) continue;
      chosen = i;
      cdf += probs[i];
      if (u < cdf) break;
    }
    out_ids[r] = chosen;
  }
  return Status::Ok();
}

Status ApplyTokenBitmask(float* logits, const uint32_t* bitmask, const SamplingRow* rows,
                         int num_rows, int vocab) {
  if (num_rows < 0 || vocab <= 0) {
    return Status::InvalidArgument("token bitmask: vocab must be positive, num_rows >= 0");
  }
  const size_t words = static_cast<size_t>(TokenBitmaskWords(vocab));
  for (int r = 0; r < num_rows; ++r) {
    if (rows[r].mask_row < 0) continue;
    const uint32_t* mask = bitmask + static_cast<size_t>(rows[r].mask_row) * words;
    float* row = logits + static_cast<size_t>(r) * static_cast<size_t>(vocab);
    for (int t = 0; t < vocab; ++t) {
      if (!((mask[t >> 5] >> (t & 31)) & 1u)) row[t] = -std::numeric_limits<float>::infinity();
    }
  }
  return Status::Ok();
}

}  // namespace sluice::kernels::cpu
