#include "sluice/kernels/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>
#include <vector>

#include "sluice/kernels/activation.h"
#include "sluice/kernels/gemm.h"

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

Status MoeExperts(float* out, const float* x, const float* router_logits,
                  const MoeExpertWeights<float>& w, const MoeShape& s, int num_tokens) {
  const int n = num_tokens, h = s.hidden, inter = s.intermediate, k = s.top_k;
  if (n < 0 || h <= 0 || inter <= 0 || w.gate_up == nullptr || w.down == nullptr) {
    return Status::InvalidArgument("moe: need hidden, intermediate > 0 and both expert weights");
  }
  std::vector<int32_t> ids(static_cast<size_t>(n) * std::max(k, 0));
  std::vector<float> weights(ids.size());
  Status st = RouteTopK(ids.data(), weights.data(), router_logits, n, s.num_experts, k, s.routing,
                        s.renormalize);
  if (!st.ok()) return st;
  // Expert by expert over the tokens routed to it, each output added with its weight.
  std::vector<std::vector<std::pair<int, float>>> routed(static_cast<size_t>(s.num_experts));
  for (int t = 0; t < n; ++t) {
    for (int j = 0; j < k; ++j) {
      const size_t at = static_cast<size_t>(t) * k + j;
      routed[static_cast<size_t>(ids[at])].emplace_back(t, weights[at]);
    }
  }
  std::vector<float> sum(static_cast<size_t>(n) * h, 0.0f), in, gate_up, act;
  for (int e = 0; e < s.num_experts; ++e) {
    const auto& rows = routed[static_cast<size_t>(e)];
    if (rows.empty()) continue;
    const int m = static_cast<int>(rows.size());
    in.resize(static_cast<size_t>(m) * h);
    for (int r = 0; r < m; ++r) {
      const float* src = x + static_cast<size_t>(rows[r].first) * h;
      std::copy(src, src + h, in.begin() + static_cast<size_t>(r) * h);
    }
    gate_up.resize(static_cast<size_t>(m) * 2 * inter);
    act.resize(static_cast<size_t>(m) * inter);
    const size_t ue = static_cast<size_t>(e);
    const float* gate_up_bias = w.gate_up_bias ? w.gate_up_bias + ue * 2 * inter : nullptr;
    const float* down_bias = w.down_bias ? w.down_bias + ue * h : nullptr;
    st = Gemm(gate_up.data(), in.data(), w.gate_up + ue * 2 * inter * h, gate_up_bias, m, 2 * inter,
              h);
    if (!st.ok()) return st;
    st = s.activation == MoeActivation::kClampedSwiGlu
             ? ClampedSwiGlu(act.data(), gate_up.data(), m, inter, s.swiglu_alpha, s.swiglu_limit)
             : SiluAndMul(act.data(), gate_up.data(), m, inter);
    if (!st.ok()) return st;
    st = Gemm(in.data(), act.data(), w.down + ue * h * inter, down_bias, m, h, inter);
    if (!st.ok()) return st;
    for (int r = 0; r < m; ++r) {
      const float* src = in.data() + static_cast<size_t>(r) * h;
      float* dst = sum.data() + static_cast<size_t>(rows[r].first) * h;
      const float weight = rows[r].second;
      for (int i = 0; i < h; ++i) dst[i] += weight * src[i];
    }
  }
  std::copy(sum.begin(), sum.end(), out);
  return Status::Ok();
}

}  // namespace sluice::kernels::cpu
