#include "engine/model/cpu_model.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "sluice/kernels/activation.h"
#include "sluice/kernels/attention.h"
#include "sluice/kernels/embedding.h"
#include "sluice/kernels/gemm.h"
#include "sluice/kernels/moe.h"
#include "sluice/kernels/norm.h"
#include "sluice/kernels/quant.h"
#include "sluice/kernels/rope.h"

namespace sluice {
namespace {

absl::Status FromKernel(const kernels::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return s.code() == kernels::StatusCode::kInvalidArgument ? absl::InvalidArgumentError(s.message())
                                                           : absl::InternalError(s.message());
}

}  // namespace

CpuKvCache::CpuKvCache(const ModelConfig& config, int num_blocks, int block_size) {
  shape_ = {num_blocks, block_size, config.num_kv_heads, config.head_dim};
  const size_t n = static_cast<size_t>(num_blocks) * shape_.BlockElems();
  k_.assign(config.num_layers, std::vector<float>(n));
  v_.assign(config.num_layers, std::vector<float>(n));
}

absl::StatusOr<std::unique_ptr<CpuModel>> CpuModel::Load(const std::string& dir,
                                                         const LoadProgress& progress) {
  SLUICE_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  return Load(dir, std::move(config), progress);
}

absl::StatusOr<std::unique_ptr<CpuModel>> CpuModel::Load(const std::string& dir, ModelConfig config,
                                                         const LoadProgress& progress) {
  SLUICE_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::OpenDir(dir));
  SLUICE_ASSIGN_OR_RETURN(ModelWeights weights, LoadWeights(*ckpt, config, progress));
  return std::unique_ptr<CpuModel>(new CpuModel(std::move(config), std::move(weights)));
}

absl::StatusOr<std::unique_ptr<CpuModel>> CpuModel::LoadRandom(const std::string& dir,
                                                               uint64_t seed) {
  SLUICE_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  return LoadRandom(std::move(config), seed);
}

absl::StatusOr<std::unique_ptr<CpuModel>> CpuModel::LoadRandom(ModelConfig config, uint64_t seed) {
  SLUICE_ASSIGN_OR_RETURN(ModelWeights weights, RandomWeights(config, seed));
  return std::unique_ptr<CpuModel>(new CpuModel(std::move(config), std::move(weights)));
}

CpuModel::CpuModel(ModelConfig config, ModelWeights weights, const TpShard& shard,
                   Communicator* comm)
    : config_(std::move(config)), shard_(shard), comm_(comm), weights_(std::move(weights)) {
  if (comm_ == nullptr || comm_->size() == 1) {
    comm_ = nullptr;
    shard_ = PlanShard(config_, 0, 1);
  }
  local_ = LocalConfig(config_, shard_);
  // The model's threads are its pool's (SetThreadPool); BLAS threads would spin against
  // them, and against the ranks of a group.
  kernels::cpu::UseSingleThreadedBlas();
  rope_cos_sin_ = kernels::RopeCosSinCache(config_.rope, config_.max_position_embeddings);
}

std::unique_ptr<CpuModel> CpuModel::Rank(const ModelConfig& config, const ModelWeights& weights,
                                         const TpShard& shard, Communicator* comm) {
  return std::unique_ptr<CpuModel>(
      new CpuModel(config, ShardWeights(config, weights, shard), shard, comm));
}

absl::Status CpuModel::AllReduce(std::vector<float>& data, size_t count) {
  if (comm_ == nullptr) return absl::OkStatus();
  return comm_->AllReduceSum(data.data(), count, CommDtype::kFloat32);
}

absl::Status CpuModel::Embed(const ForwardBatch& batch) {
  const ModelConfig& c = config_;
  const int n = batch.num_tokens(), h = c.hidden_size;
  if (comm_ == nullptr) {
    return FromKernel(kernels::cpu::Embedding(residual_.data(), batch.input_ids.data(),
                                              weights_.embed.data(), n, c.vocab_size, h));
  }
  // The rank's rows of the table; the ids of other ranks' rows stay zero here and arrive
  // through the all-reduce.
  for (int t = 0; t < n; ++t) {
    const int32_t id = batch.input_ids[t];
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("embedding: token id ", id, " at index ", t,
                                                     " is outside [0, ", c.vocab_size, ")"));
    }
    float* dst = residual_.data() + static_cast<size_t>(t) * h;
    if (id >= shard_.vocab_begin && id < shard_.vocab_end) {
      const float* row = weights_.embed.data() + static_cast<size_t>(id - shard_.vocab_begin) * h;
      std::copy(row, row + h, dst);
    } else {
      std::fill(dst, dst + h, 0.0f);
    }
  }
  return AllReduce(residual_, static_cast<size_t>(n) * h);
}

absl::Status CpuModel::LmHead(int rows, std::vector<float>& logits) {
  const ModelConfig& c = config_;
  const int h = c.hidden_size, vocab = c.vocab_size;
  logits.resize(static_cast<size_t>(rows) * vocab);
  if (comm_ == nullptr) {
    return FromKernel(kernels::cpu::Gemm(logits.data(), picked_.data(), weights_.LmHead().data(),
                                         nullptr, rows, vocab, h, pool_.get()));
  }
  // Each rank's columns, padded to vocab_slice, gathered rank after rank, then laid out
  // row by row.
  const int mine = shard_.vocab_end - shard_.vocab_begin, slice = shard_.vocab_slice;
  local_logits_.assign(static_cast<size_t>(rows) * slice, 0.0f);
  gathered_logits_.resize(local_logits_.size() * shard_.size);
  if (mine > 0 && rows > 0) {
    logits.resize(static_cast<size_t>(rows) * mine);
    SLUICE_RETURN_IF_ERROR(
        FromKernel(kernels::cpu::Gemm(logits.data(), picked_.data(), weights_.LmHead().data(),
                                      nullptr, rows, mine, h, pool_.get())));
    for (int r = 0; r < rows; ++r) {
      std::copy(logits.begin() + static_cast<size_t>(r) * mine,
                logits.begin() + static_cast<size_t>(r + 1) * mine,
                local_logits_.begin() + static_cast<size_t>(r) * slice);
    }
  }
  SLUICE_RETURN_IF_ERROR(comm_->AllGather(local_logits_.data(), gathered_logits_.data(),
                                          local_logits_.size(), CommDtype::kFloat32));
  logits.resize(static_cast<size_t>(rows) * vocab);
  for (int rank = 0; rank < shard_.size; ++rank) {
    const int begin = std::min(vocab, rank * slice), end = std::min(vocab, begin + slice);
    const float* part = gathered_logits_.data() + static_cast<size_t>(rank) * rows * slice;
    for (int r = 0; r < rows; ++r) {
      std::copy(part + static_cast<size_t>(r) * slice,
                part + static_cast<size_t>(r) * slice + (end - begin),
                logits.begin() + static_cast<size_t>(r) * vocab + begin);
    }
  }
  return absl::OkStatus();
}

absl::Status CpuModel::ValidateBatch(const ForwardBatch& b, const CpuKvCache& cache) const {
  const int n = b.num_tokens();
  if (b.positions.size() != static_cast<size_t>(n) ||
      b.slot_mapping.size() != static_cast<size_t>(n)) {
    return absl::InvalidArgumentError("batch: positions and slot_mapping must match input_ids");
  }
  if (b.cu_seqlens_q.size() != b.seq_lens.size() + 1 || b.cu_seqlens_q.back() != n ||
      b.block_tables.size() != b.seq_lens.size() * static_cast<size_t>(b.max_blocks_per_seq)) {
    return absl::InvalidArgumentError("batch: cu_seqlens_q, seq_lens and block_tables disagree");
  }
  for (int p : b.positions) {
    if (p < 0 || p >= config_.max_position_embeddings) {
      return absl::OutOfRangeError(absl::StrCat("batch: position ", p,
                                                " is outside the context "
                                                "window of ",
                                                config_.max_position_embeddings));
    }
  }
  for (int32_t block : b.block_tables) {
    if (block < 0 || block >= cache.shape().num_blocks) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch: block ", block, " is not in the cache"));
    }
  }
  for (int32_t row : b.logits_rows) {
    if (row < 0 || row >= n) return absl::InvalidArgumentError("batch: logits row out of range");
  }
  return absl::OkStatus();
}

absl::Status CpuModel::Forward(const ForwardBatch& batch, CpuKvCache& cache,
                               std::vector<float>& logits) {
  SLUICE_RETURN_IF_ERROR(ValidateBatch(batch, cache));
  const ModelConfig& c = config_;
  const int n = batch.num_tokens();
  const int h = c.hidden_size;
  hidden_.resize(static_cast<size_t>(n) * h);
  residual_.assign(static_cast<size_t>(n) * h, 0.0f);
  SLUICE_RETURN_IF_ERROR(Embed(batch));
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const LayerWeights& w = weights_.layers[layer];
    // residual already holds the running sum; hidden := norm(residual).
    SLUICE_RETURN_IF_ERROR(FromKernel(kernels::cpu::RmsNorm(
        hidden_.data(), residual_.data(), w.input_norm.data(), n, h, c.rms_norm_eps)));
    SLUICE_RETURN_IF_ERROR(Attention(layer, batch, cache));  // hidden := attn output
    SLUICE_RETURN_IF_ERROR(AllReduce(hidden_, hidden_.size()));
    SLUICE_RETURN_IF_ERROR(FromKernel(kernels::cpu::FusedAddRmsNorm(
        hidden_.data(), residual_.data(), w.post_norm.data(), n, h, c.rms_norm_eps)));
    SLUICE_RETURN_IF_ERROR(Mlp(layer, n));  // hidden := mlp output
    SLUICE_RETURN_IF_ERROR(AllReduce(hidden_, hidden_.size()));
    for (size_t i = 0; i < hidden_.size(); ++i) residual_[i] += hidden_[i];
  }
  // Final norm and lm_head only for the rows that need logits.
  const int rows = static_cast<int>(batch.logits_rows.size());
  picked_.resize(static_cast<size_t>(rows) * h);
  for (int r = 0; r < rows; ++r) {
    const float* src = residual_.data() + static_cast<size_t>(batch.logits_rows[r]) * h;
    std::copy(src, src + h, picked_.begin() + static_cast<size_t>(r) * h);
  }
  SLUICE_RETURN_IF_ERROR(FromKernel(kernels::cpu::RmsNorm(
      picked_.data(), picked_.data(), weights_.final_norm.data(), rows, h, c.rms_norm_eps)));
  return LmHead(rows, logits);
}

void CpuModel::ReserveScratch(int max_tokens, int max_rows) {
  const ModelConfig& c = local_;
  const size_t n = static_cast<size_t>(std::max(max_tokens, 0));
  const size_t q_width = static_cast<size_t>(c.num_q_heads) * c.head_dim;
  const size_t kv_width = static_cast<size_t>(c.num_kv_heads) * c.head_dim;
  // assign() writes every element: the pages are resident from here on. Forward's later
  // resize() calls only shrink or regrow the size within this capacity.
  hidden_.assign(n * c.hidden_size, 0.0f);
  residual_.assign(n * c.hidden_size, 0.0f);
  qkv_.assign(n * (q_width + 2 * kv_width), 0.0f);
  q_.assign(n * q_width, 0.0f);
  k_.assign(n * kv_width, 0.0f);
  v_.assign(n * kv_width, 0.0f);
  attn_.assign(n * q_width, 0.0f);
  const size_t mlp = static_cast<size_t>(std::max(c.intermediate_size, c.moe_intermediate_size));
  gate_up_.assign(n * 2 * mlp, 0.0f);
  act_.assign(n * mlp, 0.0f);
  picked_.assign(static_cast<size_t>(std::max(max_rows, 0)) * c.hidden_size, 0.0f);
  if (c.num_experts > 0) {
    router_logits_.assign(n * c.num_experts, 0.0f);
  }
  if (config_.fp8.enabled) {
    quantized_.assign(n * std::max({q_width, mlp, static_cast<size_t>(c.hidden_size)}), 0.0f);
  }
}

namespace {

int64_t BytesOf(const std::vector<float>& v) { return static_cast<int64_t>(v.capacity()) * 4; }

}  // namespace

int64_t CpuModel::weight_bytes() const {
  const ModelWeights& w = weights_;
  int64_t bytes = BytesOf(w.embed) + BytesOf(w.final_norm) + BytesOf(w.lm_head);
  for (const LayerWeights& l : w.layers) {
    bytes += BytesOf(l.input_norm) + BytesOf(l.qkv) + BytesOf(l.qkv_bias) + BytesOf(l.o_proj) +
             BytesOf(l.post_norm) + BytesOf(l.gate_up) + BytesOf(l.down_proj) + BytesOf(l.q_norm) +
             BytesOf(l.k_norm) + BytesOf(l.router) + BytesOf(l.expert_gate_up) +
             BytesOf(l.expert_down) + BytesOf(l.o_bias) + BytesOf(l.sinks) +
             BytesOf(l.router_bias) + BytesOf(l.expert_gate_up_bias) + BytesOf(l.expert_down_bias);
  }
  return bytes;
}

int64_t CpuModel::scratch_bytes() const {
  int64_t bytes = 0;
  for (const auto* v : {&hidden_, &residual_, &qkv_, &q_, &k_, &v_, &attn_, &gate_up_, &act_,
                        &picked_, &router_logits_, &quantized_}) {
    bytes += BytesOf(*v);
  }
  return bytes;
}

int64_t CpuKvCache::bytes() const {
  int64_t bytes = 0;
  for (const auto& k : k_) bytes += BytesOf(k);
  for (const auto& v : v_) bytes += BytesOf(v);
  return bytes;
}

absl::StatusOr<const float*> CpuModel::LinearInput(const InputQuant& q, const float* x, int rows,
                                                   int cols) {
  if (q.mode == InputQuant::Mode::kNone) return x;
  quantized_.resize(static_cast<size_t>(rows) * cols);
  const int64_t group = q.mode == InputQuant::Mode::kPerTokenGroup ? q.group : 0;
  const float scale = q.mode == InputQuant::Mode::kStatic ? q.scale : 0.0f;
  SLUICE_RETURN_IF_ERROR(FromKernel(
      kernels::cpu::QuantizeDequantizeFp8(quantized_.data(), x, rows, cols, group, scale)));
  return quantized_.data();
}

absl::Status CpuModel::Attention(int layer, const ForwardBatch& b, CpuKvCache& cache) {
  const ModelConfig& c = local_;
  const LayerWeights& w = weights_.layers[layer];
  const int n = b.num_tokens();
  const int q_width = c.num_q_heads * c.head_dim, kv_width = c.num_kv_heads * c.head_dim;
  const int qkv_width = q_width + 2 * kv_width;
  qkv_.resize(static_cast<size_t>(n) * qkv_width);
  SLUICE_ASSIGN_OR_RETURN(const float* x,
                          LinearInput(w.quant.qkv, hidden_.data(), n, c.hidden_size));
  SLUICE_RETURN_IF_ERROR(FromKernel(kernels::cpu::Gemm(
      qkv_.data(), x, w.qkv.data(), w.qkv_bias.empty() ? nullptr : w.qkv_bias.data(), n, qkv_width,
      c.hidden_size, pool_.get())));
  q_.resize(static_cast<size_t>(n) * q_width);
  k_.resize(static_cast<size_t>(n) * kv_width);
  v_.resize(static_cast<size_t>(n) * kv_width);
  for (int t = 0; t < n; ++t) {
    const float* row = qkv_.data() + static_cast<size_t>(t) * qkv_width;
    std::copy(row, row + q_width, q_.begin() + static_cast<size_t>(t) * q_width);
    std::copy(row + q_width, row + q_width + kv_width,
              k_.begin() + static_cast<size_t>(t) * kv_width);
    std::copy(row + q_width + kv_width, row + qkv_width,
              v_.begin() + static_cast<size_t>(t) * kv_width);
  }
  if (c.qk_norm) {  // each head of q and k normalized before RoPE
    SLUICE_RETURN_IF_ERROR(FromKernel(kernels::cpu::RmsNorm(
        q_.data(), q_.data(), w.q_norm.data(), n * c.num_q_heads, c.head_dim, c.rms_norm_eps)));
    SLUICE_RETURN_IF_ERROR(FromKernel(kernels::cpu::RmsNorm(
        k_.data(), k_.data(), w.k_norm.data(), n * c.num_kv_heads, c.head_dim, c.rms_norm_eps)));
  }
  SLUICE_RETURN_IF_ERROR(FromKernel(
      kernels::cpu::ApplyRope(q_.data(), k_.data(), b.positions.data(), rope_cos_sin_.data(), n,
                              c.num_q_heads, c.num_kv_heads, c.head_dim, c.rope.rotary_dim)));
  SLUICE_RETURN_IF_ERROR(
      FromKernel(kernels::cpu::WriteKvCache(cache.k(layer), cache.v(layer), k_.data(), v_.data(),
                                            b.slot_mapping.data(), n, cache.shape())));
  kernels::PagedAttentionParams p;
  p.num_seqs = b.num_seqs();
  p.num_q_heads = c.num_q_heads;
  p.num_kv_heads = c.num_kv_heads;
  p.head_dim = c.head_dim;
  p.block_size = cache.shape().block_size;
  p.max_blocks_per_seq = b.max_blocks_per_seq;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  p.block_tables = b.block_tables.data();
  p.seq_lens = b.seq_lens.data();
  p.cu_seqlens_q = b.cu_seqlens_q.data();
  p.sliding_window = c.LayerWindow(layer);
  p.sinks = w.sinks.empty() ? nullptr : w.sinks.data();
  attn_.resize(static_cast<size_t>(n) * q_width);
  SLUICE_RETURN_IF_ERROR(FromKernel(kernels::cpu::PagedAttentionFast(
      p, attn_.data(), q_.data(), cache.k(layer), cache.v(layer), pool_.get())));
  SLUICE_ASSIGN_OR_RETURN(const float* attn, LinearInput(w.quant.o_proj, attn_.data(), n, q_width));
  return FromKernel(kernels::cpu::Gemm(hidden_.data(), attn, w.o_proj.data(),
                                       w.o_bias.empty() ? nullptr : w.o_bias.data(), n,
                                       c.hidden_size, q_width, pool_.get()));
}

absl::Status CpuModel::Mlp(int layer, int n) {
  const ModelConfig& c = local_;
  const LayerWeights& w = weights_.layers[layer];
  if (c.IsMoeLayer(layer)) return Moe(layer, n);
  const int inter = c.intermediate_size;
  gate_up_.resize(static_cast<size_t>(n) * 2 * inter);
  act_.resize(static_cast<size_t>(n) * inter);
  SLUICE_ASSIGN_OR_RETURN(const float* x,
                          LinearInput(w.quant.gate_up, hidden_.data(), n, c.hidden_size));
  SLUICE_RETURN_IF_ERROR(FromKernel(kernels::cpu::Gemm(
      gate_up_.data(), x, w.gate_up.data(), nullptr, n, 2 * inter, c.hidden_size, pool_.get())));
  SLUICE_RETURN_IF_ERROR(
      FromKernel(kernels::cpu::SiluAndMul(act_.data(), gate_up_.data(), n, inter)));
  SLUICE_ASSIGN_OR_RETURN(const float* act, LinearInput(w.quant.down, act_.data(), n, inter));
  return FromKernel(kernels::cpu::Gemm(hidden_.data(), act, w.down_proj.data(), nullptr, n,
                                       c.hidden_size, inter, pool_.get()));
}

absl::Status CpuModel::Moe(int layer, int n) {
  const ModelConfig& c = local_;
  const LayerWeights& w = weights_.layers[layer];
  router_logits_.resize(static_cast<size_t>(n) * c.num_experts);
  SLUICE_RETURN_IF_ERROR(FromKernel(kernels::cpu::Gemm(
      router_logits_.data(), hidden_.data(), w.router.data(),
      w.router_bias.empty() ? nullptr : w.router_bias.data(), n, c.num_experts, c.hidden_size)));
  kernels::MoeExpertWeights<float> experts;
  experts.gate_up = w.expert_gate_up.data();
  experts.gate_up_bias = w.expert_gate_up_bias.empty() ? nullptr : w.expert_gate_up_bias.data();
  experts.down = w.expert_down.data();
  experts.down_bias = w.expert_down_bias.empty() ? nullptr : w.expert_down_bias.data();
  return FromKernel(kernels::cpu::MoeExperts(hidden_.data(), hidden_.data(), router_logits_.data(),
                                             experts, c.MoeShapeOf(), n));
}

}  // namespace sluice
