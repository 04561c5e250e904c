#include "sluice/kernels/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace sluice::kernels {

std::vector<float> RopeInvFreq(const RopeConfig& config) {
  const int half = config.rotary_dim / 2;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i) {
    // transformers: 1 / theta ** (arange(0, dim, 2).float() / dim), in fp32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(config.rotary_dim);
    inv_freq[i] = 1.0f / std::pow(config.theta, exponent);
  }
  if (config.yarn_factor > 0.0f) {
    // YaRN: interpolated (divided by the factor) below a band of rotations counted over
    // the original context, extrapolated (kept) above it, blended linearly within it.
    const double dim = config.rotary_dim, base = config.theta;
    auto correction_dim = [&](double rotations) {
      return dim *
             std::log(config.yarn_original_max_position / (rotations * 2 * std::numbers::pi)) /
             (2 * std::log(base));
    };
    double low = correction_dim(config.yarn_beta_fast),
           high = correction_dim(config.yarn_beta_slow);
    if (config.yarn_truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, dim - 1);
    if (low == high) high += 0.001;
    for (int i = 0; i < half; ++i) {
      const float ramp = std::clamp(static_cast<float>((i - low) / (high - low)), 0.0f, 1.0f);
      const float extrapolation = 1.0f - ramp;  // the share kept unscaled
      const float kept = inv_freq[i], scaled = inv_freq[i] / config.yarn_factor;
      inv_freq[i] = scaled * (1.0f - extrapolation) + kept * extrapolation;
    }
    return inv_freq;
  }
  if (config.llama3_factor <= 0.0f) return inv_freq;

  // llama3 scaling: long wavelengths are divided by the factor, short ones kept, and the
  // band between is interpolated smoothly.
  const float old_len = static_cast<float>(config.llama3_original_max_position);
  const float low_wavelen = old_len / config.llama3_low_freq_factor;
  const float high_wavelen = old_len / config.llama3_high_freq_factor;
  for (float& f : inv_freq) {
    const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
    if (wavelen > low_wavelen) {
      f = f / config.llama3_factor;
    } else if (wavelen >= high_wavelen) {
      const float smooth = (old_len / wavelen - config.llama3_low_freq_factor) /
                           (config.llama3_high_freq_factor - config.llama3_low_freq_factor);
      f = (1.0f - smooth) * f / config.llama3_factor + smooth * f;
    }
  }
  return inv_freq;
}

float RopeAttentionFactor(const RopeConfig& config) {
  if (config.yarn_factor <= 0.0f) return 1.0f;
  if (config.yarn_attention_factor > 0.0f) return config.yarn_attention_factor;
  return config.yarn_factor > 1.0f ? 0.1f * std::log(config.yarn_factor) + 1.0f : 1.0f;
}

std::vector<float> RopeCosSinCache(const RopeConfig& config, int max_positions) {
  const std::vector<float> inv_freq = RopeInvFreq(config);
  const float scale = RopeAttentionFactor(config);
  const int half = config.rotary_dim / 2;
  std::vector<float> cache(static_cast<size_t>(max_positions) * config.rotary_dim);
  for (int p = 0; p < max_positions; ++p) {
    float* row = cache.data() + static_cast<size_t>(p) * config.rotary_dim;
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * inv_freq[i];
      row[i] = std::cos(angle) * scale;
      row[half + i] = std::sin(angle) * scale;
    }
  }
  return cache;
}

namespace cpu {
namespace {

void RotateHeads(float* x, int num_heads, int head_dim, const float* cos_sin, int rotary_dim) {
  const int half = rotary_dim / 2;
  const float* cos = cos_sin;
  const float* sin = cos_sin + half;
  for (int h = 0; h < num_heads; ++h) {
    float* v = x + int64_t{h} * head_dim;
    for (int i = 0; i < half; ++i) {
      const float a = v[i];
      const float b = v[half + i];
      v[i] = a * cos[i] - b * sin[i];
      v[half + i] = b * cos[i] + a * sin[i];
    }
  }
}

}  // namespace

Status ApplyRope(float* q, float* k, const int32_t* positions, const float* cos_sin, int num_tokens,
                 int num_q_heads, int num_kv_heads, int head_dim, int rotary_dim) {
  if (rotary_dim <= 0 || rotary_dim > head_dim || rotary_dim % 2 != 0) {
    return Status::InvalidArgument("rope: rotary_dim must be even and in (0, head_dim]");
  }
  for (int t = 0; t < num_tokens; ++t) {
    const float* row = cos_sin + int64_t{positions[t]} * rotary_dim;
    RotateHeads(q + int64_t{t} * num_q_heads * head_dim, num_q_heads, head_dim, row, rotary_dim);
    RotateHeads(k + int64_t{t} * num_kv_heads * head_dim, num_kv_heads, head_dim, row, rotary_dim);
  }
  return Status::Ok();
}

}  // namespace cpu
}  // namespace sluice::kernels
