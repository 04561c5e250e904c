#include "engine/spec/verify.h"

#include <algorithm>

namespace sluice {
namespace {

int32_t Argmax(const float* row, int vocab) {
  return static_cast<int32_t>(std::max_element(row, row + vocab) - row);  // first of ties
}

// Inverse CDF in id order over weights w (not normalised); u in [0, 1).
int32_t Draw(const std::vector<double>& w, double u) {
  double total = 0;
  for (double x : w) total += x;
  double at = u * total, run = 0;
  int32_t last = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] <= 0) continue;
    last = static_cast<int32_t>(i);
    run += w[i];
    if (at < run) return last;
  }
  return last;  // rounding at the top end
}

}  // namespace

Verified VerifyGreedy(std::span<const int32_t> drafts, const float* target_logits, int vocab) {
  Verified v;
  for (size_t i = 0; i <= drafts.size(); ++i) {
    const int32_t want = Argmax(target_logits + i * static_cast<size_t>(vocab), vocab);
    v.tokens.push_back(want);
    if (i == drafts.size() || drafts[i] != want) break;
    ++v.accepted;
  }
  return v;
}

Verified VerifySampled(std::span<const int32_t> drafts, const float* target_probs,
                       const float* draft_probs, int vocab, const std::function<float()>& uniform) {
  Verified v;
  std::vector<double> w(static_cast<size_t>(vocab));
  for (size_t i = 0; i < drafts.size(); ++i) {
    const float* p = target_probs + i * static_cast<size_t>(vocab);
    const float* q = draft_probs ? draft_probs + i * static_cast<size_t>(vocab) : nullptr;
    const int32_t d = drafts[i];
    const double pd = p[d], qd = q ? q[d] : 1.0;
    if (qd > 0 && uniform() < std::min(1.0, pd / qd)) {
      v.tokens.push_back(d);
      ++v.accepted;
      continue;
    }
    // Rejected: the residual max(0, p - q), which has mass wherever p exceeds q.
    double mass = 0;
    for (int t = 0; t < vocab; ++t) {
      const double qt = q ? q[t] : (t == d ? 1.0 : 0.0);
      mass += (w[t] = std::max(0.0, double{p[t]} - qt));
    }
    if (!(mass > 0)) {  // p == q up to rounding: the residual is empty; p itself
      for (int t = 0; t < vocab; ++t) w[t] = p[t];
    }
    v.tokens.push_back(Draw(w, uniform()));
    return v;
  }
  const float* bonus = target_probs + drafts.size() * static_cast<size_t>(vocab);
  for (int t = 0; t < vocab; ++t) w[t] = bonus[t];
  v.tokens.push_back(Draw(w, uniform()));
  return v;
}

}  // namespace sluice
