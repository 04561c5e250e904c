#include "sluice/kernels/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace sluice::kernels::cpu {

Status RouteTopK(int32_t* expert_ids, float* weights, const float* logits, int num_tokens,
                 int num_experts, int k, MoeRouting routing, bool renormalize) {
  if (num_tokens < 0 || num_experts <= 0 || k <= 0 || k > num_experts) {
    return Status::InvalidArgument("moe routing: need 0 < k <= num_experts and num_tokens >= 0");
  }
  std::vector<float> p(static_cast<size_t>(num_experts));
  std::vector<int32_t> order(static_cast<size_t>(num_experts));
  for (int t = 0; t < num_tokens; ++t) {
    const float* row = logits + static_cast<size_t>(t) * num_experts;
    std::copy(row, row + num_experts, p.begin());
    if (routing == MoeRouting::kSoftmaxTopK) {
      const float mx = *std::max_element(p.begin(), p.end());
      float sum = 0.0f;
      for (float& x : p) sum += (x = std::exp(x - mx));
      for (float& x : p) x /= sum;
    }
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)] ||
             (p[static_cast<size_t>(a)] == p[static_cast<size_t>(b)] && a < b);
    });
    int32_t* ids = expert_ids + static_cast<size_t>(t) * k;
    float* w = weights + static_cast<size_t>(t) * k;
    for (int i = 0; i < k; ++i) {
      ids[i] = order[static_cast<size_t>(i)];
      w[i] = p[static_cast<size_t>(ids[i])];
    }
    if (routing == MoeRouting::kTopKSoftmax) {
      const float mx = w[0];
      float sum = 0.0f;
      for (int i = 0; i < k; ++i) sum += (w[i] = std::exp(w[i] - mx));
      for (int i = 0; i < k; ++i) w[i] /= sum;
    } else if (renormalize) {
      float sum = 0.0f;
      for (int i = 0; i < k; ++i) sum += w[i];
      for (int i = 0; i < k; ++i) w[i] /= sum;
    }
  }
  return Status::Ok();
}

}  // namespace sluice::kernels::cpu
