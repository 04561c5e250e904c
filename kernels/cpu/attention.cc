#include "sluice/kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace sluice::kernels {

Status ValidatePagedAttention(const PagedAttentionParams& p) {
  if (p.num_seqs < 0) return Status::InvalidArgument("paged_attention: num_seqs < 0");
  if (p.num_q_heads <= 0 || p.num_kv_heads <= 0 || p.num_q_heads % p.num_kv_heads != 0) {
    return Status::InvalidArgument(
        "paged_attention: num_q_heads (" + std::to_string(p.num_q_heads) +
        ") must be a positive multiple of num_kv_heads (" + std::to_string(p.num_kv_heads) + ")");
  }
  if (p.head_dim <= 0 || p.block_size <= 0 || p.max_blocks_per_seq <= 0) {
    return Status::InvalidArgument(
        "paged_attention: head_dim, block_size and "
        "max_blocks_per_seq must be positive");
  }
  if (p.sliding_window < 0) return Status::InvalidArgument("paged_attention: sliding_window < 0");
  if (p.num_seqs > 0 && (p.block_tables == nullptr || p.seq_lens == nullptr)) {
    return Status::InvalidArgument("paged_attention: block_tables and seq_lens are required");
  }
  return Status::Ok();
}

Status GetSequenceQueries(const PagedAttentionParams& p, int s, SequenceQueries* out) {
  out->q_begin = p.cu_seqlens_q ? p.cu_seqlens_q[s] : s;
  out->q_len = p.cu_seqlens_q ? p.cu_seqlens_q[s + 1] - out->q_begin : 1;
  out->seq_len = p.seq_lens[s];
  if (out->q_len < 0 || out->q_len > out->seq_len ||
      (out->seq_len + p.block_size - 1) / p.block_size > p.max_blocks_per_seq) {
    return Status::InvalidArgument("paged_attention: sequence " + std::to_string(s) +
                                   " has q_len " + std::to_string(out->q_len) + " and seq_len " +
                                   std::to_string(out->seq_len) + " that do not fit its table");
  }
  return Status::Ok();
}

namespace cpu {
namespace {

// Attention of one query head vector over cache positions [first, kv_len) of one
// sequence; `sink`, when finite, is one more logit in the denominator.
void AttendOne(const PagedAttentionParams& p, const int32_t* block_row, int kv_head, int first,
               int kv_len, float sink, const float* q, const float* k_cache, const float* v_cache,
               float* out, std::vector<float>& scores) {
  const int d = p.head_dim;
  const int64_t token_stride = int64_t{p.num_kv_heads} * d;
  const int64_t block_stride = token_stride * p.block_size;
  auto kv_row = [&](const float* cache, int pos) {
    return cache + block_row[pos / p.block_size] * block_stride +
           (pos % p.block_size) * token_stride + int64_t{kv_head} * d;
  };
  scores.resize(kv_len);
  float max_score = std::isfinite(sink) ? sink : -std::numeric_limits<float>::infinity();
  for (int pos = first; pos < kv_len; ++pos) {
    const float* k = kv_row(k_cache, pos);
    float dot = 0.0f;
    for (int i = 0; i < d; ++i) dot += q[i] * k[i];
    scores[pos] = dot * p.scale;
    max_score = std::max(max_score, scores[pos]);
  }
  float denom = std::isfinite(sink) ? std::exp(sink - max_score) : 0.0f;
  for (int pos = first; pos < kv_len; ++pos) {
    scores[pos] = std::exp(scores[pos] - max_score);
    denom += scores[pos];
  }
  std::fill(out, out + d, 0.0f);
  for (int pos = first; pos < kv_len; ++pos) {
    const float* v = kv_row(v_cache, pos);
    const float w = scores[pos] / denom;
    for (int i = 0; i < d; ++i) out[i] += w * v[i];
  }
}

}  // namespace

Status PagedAttention(const PagedAttentionParams& p, float* out, const float* q,
                      const float* k_cache, const float* v_cache) {
  if (Status s = ValidatePagedAttention(p); !s.ok()) return s;
  const int group = p.num_q_heads / p.num_kv_heads;
  const int64_t token_stride = int64_t{p.num_q_heads} * p.head_dim;
  std::vector<float> scores;
  for (int s = 0; s < p.num_seqs; ++s) {
    SequenceQueries sq;
    if (Status st = GetSequenceQueries(p, s, &sq); !st.ok()) return st;
    const int q_begin = sq.q_begin, q_len = sq.q_len, seq_len = sq.seq_len;
    const int32_t* block_row = p.block_tables + int64_t{s} * p.max_blocks_per_seq;
    for (int i = 0; i < q_len; ++i) {
      const int kv_len = seq_len - q_len + i + 1;
      const int first = p.sliding_window > 0 ? std::max(0, kv_len - p.sliding_window) : 0;
      const int64_t t = q_begin + i;
      for (int h = 0; h < p.num_q_heads; ++h) {
        const int64_t off = t * token_stride + int64_t{h} * p.head_dim;
        const float sink = p.sinks ? p.sinks[h] : std::numeric_limits<float>::quiet_NaN();
        AttendOne(p, block_row, h / group, first, kv_len, sink, q + off, k_cache, v_cache,
                  out + off, scores);
      }
    }
  }
  return Status::Ok();
}

}  // namespace cpu
}  // namespace sluice::kernels
