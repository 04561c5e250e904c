// Rotary position embedding, non-interleaved ("rotate_half") layout as in Llama.
#pragma once

#include <cstdint>
#include <vector>

#include "sluice/kernels/status.h"

namespace sluice::kernels {

struct RopeConfig {
  float theta = 10000.0f;
  int rotary_dim = 0;  // usually head_dim
  // llama3 scaling; factor <= 0 means the default (unscaled) rope.
  float llama3_factor = 0.0f;
  float llama3_low_freq_factor = 1.0f;
  float llama3_high_freq_factor = 4.0f;
  int llama3_original_max_position = 8192;
  // YaRN scaling (gpt-oss); factor <= 0 means off. attention_factor scales cos and sin
  // (0: 0.1 * ln(factor) + 1, as transformers derives it).
  float yarn_factor = 0.0f;
  float yarn_beta_fast = 32.0f;
  float yarn_beta_slow = 1.0f;
  int yarn_original_max_position = 4096;
  bool yarn_truncate = true;
  float yarn_attention_factor = 0.0f;
};

// The factor YaRN scales cos and sin by (1 when YaRN is off).
float RopeAttentionFactor(const RopeConfig& config);

// inv_freq[rotary_dim / 2], in fp32 as transformers computes it.
std::vector<float> RopeInvFreq(const RopeConfig& config);

// cos/sin table [max_positions, rotary_dim]: row p holds cos(p * inv_freq) in the first
// rotary_dim / 2 entries and sin(p * inv_freq) in the rest, each computed in fp32.
std::vector<float> RopeCosSinCache(const RopeConfig& config, int max_positions);

namespace cpu {

// Rotates the first rotary_dim elements of every head of q and k in place.
// REQUIRES: 0 <= positions[i] < the number of rows of cos_sin.
Status ApplyRope(float* q,                  // [num_tokens, num_q_heads, head_dim]
                 float* k,                  // [num_tokens, num_kv_heads, head_dim]
                 const int32_t* positions,  // [num_tokens]
                 const float* cos_sin,      // [max_positions, rotary_dim]
                 int num_tokens, int num_q_heads, int num_kv_heads, int head_dim, int rotary_dim);

}  // namespace cpu
}  // namespace sluice::kernels
