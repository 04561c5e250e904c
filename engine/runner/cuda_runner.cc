// The CUDA runner's construction (device checks, then weights, buffers and the KV cache
// sized from what memory is left) and its step: stage the inputs, plan attention, run
// the pieces (cuda_runner.h), read back the sampled ids. The weights are in
// cuda_runner_weights.cc, the decode graphs in cuda_runner_graphs.cc.
#include "engine/runner/cuda_runner.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/parallel/nccl_communicator.h"
#include "engine/runner/cuda_runner_internal.h"
#include "engine/runner/host_sampling.h"
#include "engine/runner/request_table.h"
#include "sluice/kernels/cuda/activation.h"
#include "sluice/kernels/cuda/attention.h"
#include "sluice/kernels/cuda/embedding.h"
#include "sluice/kernels/cuda/gather.h"
#include "sluice/kernels/cuda/gemm.h"
#include "sluice/kernels/cuda/moe.h"
#include "sluice/kernels/cuda/norm.h"
#include "sluice/kernels/cuda/qkv.h"
#include "sluice/kernels/cuda/sampling.h"
#include "sluice/kernels/rope.h"
#include "spdlog/spdlog.h"

namespace sluice {
namespace cuda_runner_internal {

CudaRunner::~CudaRunner() {
  cudaSetDevice(options_.device);
  for (auto& pieces : graphs_) {
    for (cudaGraphExec_t g : pieces) {
      if (g != nullptr) cudaGraphExecDestroy(g);
    }
  }
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::Status CudaRunner::Init(CudaRunnerInfo* info) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("--device cuda: no CUDA device is usable (",
                     err != cudaSuccess ? cudaGetErrorString(err) : "the driver reports 0 devices",
                     "); use --device cpu"));
  }
  if (options_.device < 0 || options_.device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("--cuda-device ", options_.device, ": this machine has ", count, " GPU(s)"));
  }
  SLUICE_RETURN_IF_ERROR(Cuda(cudaSetDevice(options_.device), "selecting the device"));
  cudaDeviceProp prop;
  SLUICE_RETURN_IF_ERROR(
      Cuda(cudaGetDeviceProperties(&prop, options_.device), "device properties"));
  info->device_name = prop.name;
  SLUICE_RETURN_IF_ERROR(
      Cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream"));

  if (options_.nccl_one_rank) {
    SLUICE_ASSIGN_OR_RETURN(auto comms, MakeNcclCommunicators({options_.device}));
    comm_ = std::move(comms[0]);
  }
  SLUICE_ASSIGN_OR_RETURN(config_, LoadModelConfig(options_.model_dir));
  const ModelConfig& c = config_;
  if (c.num_experts > 0 && (c.num_experts % 8 != 0 || c.num_experts > 1024 ||
                            c.num_experts_per_tok > 32 || c.moe_intermediate_size % 8 != 0)) {
    return absl::UnimplementedError(absl::StrCat(
        "--device cuda: ", c.num_experts, " experts, top-", c.num_experts_per_tok,
        ", expert intermediate size ", c.moe_intermediate_size,
        " (the fused MoE takes a multiple of 8 experts up to 1024, top-k up to 32 and an "
        "intermediate size that is a multiple of 8)"));
  }
  // One attention plan per distinct window; layer l uses its window's.
  window_of_layer_.resize(c.num_layers);
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const int w = c.LayerWindow(layer);
    auto it = std::find(windows_.begin(), windows_.end(), w);
    window_of_layer_[layer] = static_cast<int>(it - windows_.begin());
    if (it == windows_.end()) windows_.push_back(w);
  }
  if (c.head_dim != 64 && c.head_dim != 128) {
    return absl::UnimplementedError(absl::StrCat("--device cuda: head_dim ", c.head_dim,
                                                 " (the attention kernels take 64 and 128)"));
  }
  for (int dim : {c.hidden_size, c.intermediate_size, c.vocab_size,
                  (c.num_q_heads + 2 * c.num_kv_heads) * c.head_dim}) {
    if (dim % 8 != 0) {
      return absl::UnimplementedError(absl::StrCat("--device cuda: model dimension ", dim,
                                                   " is not a multiple of 8 (GEMM alignment)"));
    }
  }
  if (c.num_q_heads % c.num_kv_heads != 0 || c.hidden_size > 16384) {
    return absl::UnimplementedError(absl::StrCat(
        "--device cuda: ", c.num_q_heads, " q heads over ", c.num_kv_heads,
        " kv heads (must divide) and hidden size ", c.hidden_size, " (at most 16384)"));
  }
  max_seqs_ = std::max(1, options_.max_num_seqs);
  max_tokens_ = std::max(options_.max_num_batched_tokens, max_seqs_);
  max_blocks_per_seq_ = (c.max_position_embeddings + options_.block_size - 1) / options_.block_size;
  qkv_layout_ = {c.num_q_heads, c.num_kv_heads, c.head_dim, c.rope.rotary_dim};

  SLUICE_RETURN_IF_ERROR(AllocateWeights());
  info->weight_gib = weights_.bytes() / kGiB;
  SLUICE_RETURN_IF_ERROR(options_.random_weights ? FillRandom() : LoadCheckpoint());
  SLUICE_RETURN_IF_ERROR(ConvertSinks());
  SLUICE_RETURN_IF_ERROR(AllocateBuffers());
  if (options_.tune_gemms) SLUICE_RETURN_IF_ERROR(TuneGemms(info));
  SLUICE_RETURN_IF_ERROR(AllocateKvCache(info));
  // The uploads ran on the legacy stream, the fills and warm-ups on stream_: all done.
  SLUICE_RETURN_IF_ERROR(Cuda(cudaDeviceSynchronize(), "loading the model"));
  if (!options_.enforce_eager) SLUICE_RETURN_IF_ERROR(CaptureGraphs(info));
  return Cuda(cudaDeviceSynchronize(), "initialisation");
}

absl::Status CudaRunner::AllocateBuffers() {
  const ModelConfig& c = config_;
  const int h = c.hidden_size, q_width = c.num_q_heads * c.head_dim;
  const int T = max_tokens_, S = max_seqs_;
  // GEMM runners, picked for every power-of-two m up to the largest batch.
  auto gemm = [&](int n, int k, bool bias, std::unique_ptr<kc::GemmRunner>* r,
                  kc::GemmOut out = kc::GemmOut::kBf16) {
    return Kernel(kc::GemmRunner::Create(n, k, bias, T, r, out));
  };
  SLUICE_RETURN_IF_ERROR(gemm(qkv_layout_.Width(), h, c.attention_bias, &gemm_qkv_));
  SLUICE_RETURN_IF_ERROR(gemm(h, q_width, c.o_proj_bias, &gemm_o_));
  // The dense MLP's runners and buffers only where some layer is dense.
  bool any_dense = false;
  for (int l = 0; l < c.num_layers; ++l) any_dense = any_dense || !c.IsMoeLayer(l);
  const int dense_inter = any_dense ? c.intermediate_size : 0;
  if (any_dense) {
    SLUICE_RETURN_IF_ERROR(gemm(2 * c.intermediate_size, h, false, &gemm_gate_up_));
    SLUICE_RETURN_IF_ERROR(gemm(h, c.intermediate_size, false, &gemm_down_));
  }
  if (c.num_experts > 0) {
    SLUICE_RETURN_IF_ERROR(
        gemm(c.num_experts, h, c.gpt_oss_moe, &gemm_router_, kc::GemmOut::kFloat));
    SLUICE_RETURN_IF_ERROR(
        router_logits_.Allocate(sizeof(float) * size_t(T) * c.num_experts, "router logits"));
    SLUICE_RETURN_IF_ERROR(
        moe_ws_.Allocate(kc::MoeWorkspaceBytes(c.MoeShapeOf(), T), "MoE workspace"));
  }
  SLUICE_RETURN_IF_ERROR(Kernel(
      kc::GemmRunner::Create(c.vocab_size, h, false, S, &gemm_lm_head_, kc::GemmOut::kFloat)));

  size_t at = 0;
  auto take = [&](size_t elems) {
    const size_t off = at;
    at = Align(at + elems * sizeof(bf16));
    return off;
  };
  const size_t o_hidden = take(size_t(T) * h), o_residual = take(size_t(T) * h),
               o_qkv = take(size_t(T) * qkv_layout_.Width()), o_q = take(size_t(T) * q_width),
               o_attn = take(size_t(T) * q_width), o_gate_up = take(size_t(T) * 2 * dense_inter),
               o_act = take(size_t(T) * dense_inter), o_gh = take(size_t(S) * h),
               o_gr = take(size_t(S) * h);
  SLUICE_RETURN_IF_ERROR(acts_.Allocate(at, "activations"));
  hidden_ = acts_.as<bf16>(o_hidden);
  residual_ = acts_.as<bf16>(o_residual);
  qkv_ = acts_.as<bf16>(o_qkv);
  q_ = acts_.as<bf16>(o_q);
  attn_ = acts_.as<bf16>(o_attn);
  gate_up_ = acts_.as<bf16>(o_gate_up);
  act_ = acts_.as<bf16>(o_act);
  gathered_hidden_ = acts_.as<bf16>(o_gh);
  gathered_residual_ = acts_.as<bf16>(o_gr);
  SLUICE_RETURN_IF_ERROR(logits_.Allocate(sizeof(float) * size_t(S) * c.vocab_size, "logits"));
  SLUICE_RETURN_IF_ERROR(gemm_ws_.Allocate(kc::kGemmWorkspaceBytes, "GEMM workspace"));
  plans_.resize(windows_.size());
  attn_params_.resize(windows_.size());
  attn_ws_.clear();
  for (size_t i = 0; i < windows_.size(); ++i) {
    attn_ws_.push_back(std::make_unique<DeviceMemory>());
    SLUICE_RETURN_IF_ERROR(attn_ws_[i]->Allocate(size_t{16} << 20, "attention workspace"));
  }
  SLUICE_RETURN_IF_ERROR(sampled_.Allocate(sizeof(int32_t) * S, "sampled ids"));
  SLUICE_RETURN_IF_ERROR(host_sampled_.Allocate(sizeof(int32_t) * S));
  const size_t mask_bytes =
      sizeof(uint32_t) * size_t(S) * size_t(kernels::TokenBitmaskWords(c.vocab_size));
  SLUICE_RETURN_IF_ERROR(token_masks_.Allocate(mask_bytes, "token bitmasks"));
  SLUICE_RETURN_IF_ERROR(host_token_masks_.Allocate(mask_bytes));

  layout_ = InputLayout(T, S, max_blocks_per_seq_);
  SLUICE_RETURN_IF_ERROR(inputs_.Allocate(layout_.total, "step inputs"));
  SLUICE_RETURN_IF_ERROR(host_inputs_.Allocate(layout_.total));
  std::memset(host_inputs_.as<char>(), 0, layout_.total);

  const std::vector<float> cos_sin = kernels::RopeCosSinCache(c.rope, c.max_position_embeddings);
  SLUICE_RETURN_IF_ERROR(cos_sin_.Allocate(cos_sin.size() * sizeof(float), "RoPE table"));
  return Cuda(cudaMemcpy(cos_sin_.as<float>(), cos_sin.data(), cos_sin.size() * sizeof(float),
                         cudaMemcpyHostToDevice),
              "uploading the RoPE table");
}

MemoryUsage CudaRunner::memory() const {
  MemoryUsage m;
  m.weights = static_cast<int64_t>(weights_.bytes());
  m.kv_cache = static_cast<int64_t>(kv_.bytes());
  for (const DeviceMemory* d : {&acts_, &logits_, &gemm_ws_, &inputs_, &cos_sin_, &sampled_,
                                &router_logits_, &moe_ws_, &sinks_}) {
    m.activations += static_cast<int64_t>(d->bytes());
  }
  for (const auto& ws : attn_ws_) m.activations += static_cast<int64_t>(ws->bytes());
  m.cuda_graphs = graph_bytes_;
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
    m.device_total = static_cast<int64_t>(total_bytes);
    m.device_used = static_cast<int64_t>(total_bytes - free_bytes);
  }
  return m;
}

absl::Status CudaRunner::AllocateKvCache(CudaRunnerInfo* info) {
  const ModelConfig& c = config_;
  shape_ = {0, options_.block_size, c.num_kv_heads, c.head_dim};
  const size_t bytes_per_block = size_t(2) * c.num_layers * shape_.BlockElems() * sizeof(bf16);
  int num_blocks = options_.num_kv_blocks;
  size_t free_bytes = 0, total_bytes = 0;
  SLUICE_RETURN_IF_ERROR(Cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "memory info"));
  const double budget = options_.gpu_memory_utilization * total_bytes -
                        static_cast<double>(total_bytes - free_bytes) - kHeadroomBytes;
  if (num_blocks == 0) {
    num_blocks = static_cast<int>(std::max(0.0, budget) / bytes_per_block);
  }
  const int needed = (c.max_position_embeddings + options_.block_size - 1) / options_.block_size;
  if (num_blocks < 1 || static_cast<double>(num_blocks) * bytes_per_block > budget) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "no room for the KV cache: %d blocks of %.2f MiB asked for, %.2f GiB left of the budget "
        "after %.2f GiB of weights (GPU %.2f GiB, --gpu-memory-utilization %.2f)",
        num_blocks, bytes_per_block / 1048576.0, std::max(0.0, budget) / kGiB,
        weights_.bytes() / kGiB, total_bytes / kGiB, options_.gpu_memory_utilization));
  }
  if (num_blocks < needed) {
    spdlog::warn(
        "the KV cache holds {} tokens, fewer than one sequence at the context window "
        "({}); long requests will wait or be preempted",
        size_t(num_blocks) * options_.block_size, c.max_position_embeddings);
  }
  shape_.num_blocks = num_blocks;
  SLUICE_RETURN_IF_ERROR(kv_.Allocate(bytes_per_block * num_blocks, "KV cache"));
  info->num_kv_blocks = num_blocks;
  info->kv_cache_gib = kv_.bytes() / kGiB;
  return absl::OkStatus();
}

absl::Status CudaRunner::QkvPart(int layer, int n) {
  const DeviceLayer& w = layers_[layer];
  SLUICE_RETURN_IF_ERROR(
      Kernel(gemm_qkv_->Run(qkv_, hidden_, w.qkv, w.qkv_bias, n, gemm_ws_.as<void>(), stream_)));
  return Kernel(kc::SplitQkvRopeWriteKv(
      q_, KCache(layer), VCache(layer), qkv_, inputs_.as<int32_t>(layout_.positions),
      inputs_.as<int64_t>(layout_.slots), cos_sin_.as<float>(), n, qkv_layout_, shape_, stream_,
      kernels::QkNorm<bf16>{w.q_norm, w.k_norm, config_.rms_norm_eps}));
}

absl::Status CudaRunner::AllReduceHidden(int n) {
  if (comm_ == nullptr) return absl::OkStatus();
  return comm_->AllReduceSum(hidden_, size_t(n) * config_.hidden_size, CommDtype::kBfloat16,
                             stream_);
}

absl::Status CudaRunner::MlpPart(int layer, int n) {
  const ModelConfig& c = config_;
  const DeviceLayer& w = layers_[layer];
  void* ws = gemm_ws_.as<void>();
  if (c.IsMoeLayer(layer)) {
    // Router logits in fp32 (routing compares them), then the fused experts in place.
    float* logits = router_logits_.as<float>();
    SLUICE_RETURN_IF_ERROR(
        Kernel(gemm_router_->RunFloat(logits, hidden_, w.router, w.router_bias, n, ws, stream_)));
    return Kernel(kc::Moe(hidden_, hidden_, logits, w.experts, c.MoeShapeOf(), n,
                          moe_ws_.as<void>(), max_tokens_, stream_));
  }
  SLUICE_RETURN_IF_ERROR(
      Kernel(gemm_gate_up_->Run(gate_up_, hidden_, w.gate_up, nullptr, n, ws, stream_)));
  SLUICE_RETURN_IF_ERROR(Kernel(kc::SiluAndMul(act_, gate_up_, n, c.intermediate_size, stream_)));
  return Kernel(gemm_down_->Run(hidden_, act_, w.down_proj, nullptr, n, ws, stream_));
}

absl::Status CudaRunner::RunPiece(int k, int n, int rows, bool gather) {
  const ModelConfig& c = config_;
  const int h = c.hidden_size;
  const float eps = c.rms_norm_eps;
  void* ws = gemm_ws_.as<void>();
  if (k == 0) {
    SLUICE_RETURN_IF_ERROR(Kernel(kc::Embedding(residual_, inputs_.as<int32_t>(layout_.ids), embed_,
                                                n, c.vocab_size, h, stream_)));
    SLUICE_RETURN_IF_ERROR(
        Kernel(kc::RmsNorm(hidden_, residual_, layers_[0].input_norm, n, h, eps, stream_)));
    return QkvPart(0, n);
  }
  const DeviceLayer& w = layers_[k - 1];
  SLUICE_RETURN_IF_ERROR(
      Kernel(gemm_o_->Run(hidden_, attn_, w.o_proj, w.o_proj_bias, n, ws, stream_)));
  SLUICE_RETURN_IF_ERROR(AllReduceHidden(n));
  SLUICE_RETURN_IF_ERROR(
      Kernel(kc::FusedAddRmsNorm(hidden_, residual_, w.post_norm, n, h, eps, stream_)));
  SLUICE_RETURN_IF_ERROR(MlpPart(k - 1, n));
  SLUICE_RETURN_IF_ERROR(AllReduceHidden(n));
  if (k < c.num_layers) {
    SLUICE_RETURN_IF_ERROR(
        Kernel(kc::FusedAddRmsNorm(hidden_, residual_, layers_[k].input_norm, n, h, eps, stream_)));
    return QkvPart(k, n);
  }
  bf16 *x = hidden_, *r = residual_;
  if (gather) {
    const int32_t* sel = inputs_.as<int32_t>(layout_.logits_rows);
    SLUICE_RETURN_IF_ERROR(
        Kernel(kc::GatherRows(gathered_hidden_, hidden_, sel, rows, h, stream_)));
    SLUICE_RETURN_IF_ERROR(
        Kernel(kc::GatherRows(gathered_residual_, residual_, sel, rows, h, stream_)));
    x = gathered_hidden_;
    r = gathered_residual_;
  }
  SLUICE_RETURN_IF_ERROR(Kernel(kc::FusedAddRmsNorm(x, r, final_norm_, rows, h, eps, stream_)));
  SLUICE_RETURN_IF_ERROR(Kernel(
      gemm_lm_head_->RunFloat(logits_.as<float>(), x, lm_head_, nullptr, rows, ws, stream_)));
  // Rows under a grammar keep only the tokens of their mask (UploadMasks); the others
  // pass untouched.
  const kernels::SamplingRow* sampling = inputs_.as<kernels::SamplingRow>(layout_.sampling);
  SLUICE_RETURN_IF_ERROR(Kernel(kc::ApplyTokenBitmask(
      logits_.as<float>(), token_masks_.as<uint32_t>(), sampling, rows, c.vocab_size, stream_)));
  return Kernel(kc::Sample(sampled_.as<int32_t>(), logits_.as<float>(), sampling, rows,
                           c.vocab_size, stream_));
}

absl::Status CudaRunner::UploadMasks() {
  if (masks_.num_masked() == 0) return absl::OkStatus();
  masks_.Fill(/*async=*/false);
  SLUICE_RETURN_IF_ERROR(masks_.Wait());
  const size_t bytes = sizeof(uint32_t) * masks_.words() * size_t(masks_.num_masked());
  // The previous step's copy is done: CollectSampled waited for the stream.
  std::memcpy(host_token_masks_.as<char>(), masks_.data(), bytes);
  return Cuda(cudaMemcpyAsync(token_masks_.as<void>(), host_token_masks_.as<char>(), bytes,
                              cudaMemcpyHostToDevice, stream_),
              "token bitmasks");
}

absl::Status CudaRunner::PrepareAttention(const ForwardBatch& b) {
  for (size_t i = 0; i < windows_.size(); ++i) {
    SLUICE_RETURN_IF_ERROR(PrepareAttentionPlan(b, i));
  }
  return absl::OkStatus();
}

absl::Status CudaRunner::PrepareAttentionPlan(const ForwardBatch& b, size_t i) {
  const ModelConfig& c = config_;
  kernels::PagedAttentionParams& p = attn_params_[i];
  kc::PagedAttentionPlan& plan = plans_[i];
  DeviceMemory& ws = *attn_ws_[i];
  p.num_seqs = b.num_seqs();
  p.num_q_heads = c.num_q_heads;
  p.num_kv_heads = c.num_kv_heads;
  p.head_dim = c.head_dim;
  p.block_size = shape_.block_size;
  p.max_blocks_per_seq = std::max(1, b.max_blocks_per_seq);
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  p.sliding_window = windows_[i];
  p.block_tables = inputs_.as<int32_t>(layout_.block_tables);
  p.seq_lens = inputs_.as<int32_t>(layout_.seq_lens);
  p.cu_seqlens_q = inputs_.as<int32_t>(layout_.cu_seqlens);
  SLUICE_RETURN_IF_ERROR(
      Kernel(kc::PlanPagedAttention(p, b.seq_lens.data(), b.cu_seqlens_q.data(), &plan)));
  if (plan.workspace_bytes > ws.bytes()) {
    // Grows between steps; the stream holds no work that reads the old workspace yet.
    SLUICE_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(stream_), "attention workspace"));
    SLUICE_RETURN_IF_ERROR(ws.Allocate(plan.workspace_bytes * 2, "attention workspace"));
  }
  return Kernel(kc::UploadPagedAttentionPlan(plan, ws.as<void>(), ws.bytes(), stream_));
}

absl::Status CudaRunner::Attention(int layer) {
  const size_t i = static_cast<size_t>(window_of_layer_[layer]);
  kernels::PagedAttentionParams p = attn_params_[i];
  p.sinks = layers_[layer].sinks;
  return Kernel(kc::PagedAttention(plans_[i], p, attn_, q_, KCache(layer), VCache(layer),
                                   attn_ws_[i]->as<void>(), stream_));
}

absl::StatusOr<StepResult> CudaRunner::Execute(const SchedulerOutput& output) {
  // The output's state changes come before anything that can fail or return early, so
  // that a step that fails still retires its requests (runner.h).
  table_.Apply(output);
  if (output.scheduled.empty()) return StepResult{};  // a step that only retires requests
  // The engine thread is not the one that loaded the model: the device is per thread.
  SLUICE_RETURN_IF_ERROR(Cuda(cudaSetDevice(options_.device), "selecting the device"));
  SLUICE_ASSIGN_OR_RETURN(ForwardBatch b, table_.Build(output));
  const int n = b.num_tokens();
  const int rows = static_cast<int>(b.logits_rows.size());
  if (n == 0) return StepResult{};  // entries of no tokens: nothing to run either
  if (n > max_tokens_ || b.num_seqs() > max_seqs_ || b.max_blocks_per_seq > max_blocks_per_seq_) {
    return absl::InvalidArgumentError(absl::StrCat("step of ", n, " tokens and ", b.num_seqs(),
                                                   " sequences exceeds the runner's buffers (",
                                                   max_tokens_, ", ", max_seqs_, ")"));
  }
  for (int p : b.positions) {
    if (p < 0 || p >= config_.max_position_embeddings) {
      return absl::OutOfRangeError(absl::StrCat("position ", p, " is outside the context window"));
    }
  }
  const RequestTable::PromptScoreRows prompt_rows = table_.PromptRows(output);
  std::vector<RequestTable::Seq*> sampling_seqs = table_.Advance(output);
  masks_.Plan(sampling_seqs, config_.vocab_size);
  // A decode batch in which every row samples runs as graphs, padded.
  const bool decode = n == b.num_seqs() && rows == n;
  const int graph = decode && !graphs_.empty() ? GraphIndex(n) : -1;
  const int padded = graph >= 0 ? graph_sizes_[graph] : n;

  const size_t staged = StageInputs(b, sampling_seqs, padded);
  absl::Status launched = Cuda(cudaMemcpyAsync(inputs_.as<void>(), host_inputs_.as<char>(), staged,
                                               cudaMemcpyHostToDevice, stream_),
                               "step inputs");
  if (launched.ok()) launched = PrepareAttention(b);
  if (launched.ok()) {
    // The grammars' masks are filled here while the device runs the layers.
    launched = Forward(graph >= 0 ? padded : n, graph >= 0 ? padded : rows,
                       /*gather=*/graph < 0, graph, [this] { return UploadMasks(); });
  }
  if (!launched.ok()) {
    // What was queued finishes before the staging buffer is written again.
    cudaStreamSynchronize(stream_);
    return launched;
  }
  SLUICE_ASSIGN_OR_RETURN(StepResult result, CollectSampled(sampling_seqs, rows));
  // A row that scores a prompt token is never the last of its chunk's rows when that
  // chunk samples, so such a step never ran as a decode graph: hidden_ and residual_
  // still hold every row before the final norm.
  if (!prompt_rows.empty()) {
    SLUICE_ASSIGN_OR_RETURN(result.prompt_logprobs,
                            ScorePrompts(prompt_rows, output.scheduled.size()));
  }
  return result;
}

absl::StatusOr<std::vector<std::vector<TokenLogprobs>>> CudaRunner::ScorePrompts(
    const RequestTable::PromptScoreRows& prompt_rows, size_t num_entries) {
  const ModelConfig& c = config_;
  const int h = c.hidden_size, vocab = c.vocab_size;
  const float eps = c.rms_norm_eps;
  std::vector<float> host_logits;
  RequestTable::PromptScoreRows part;
  std::vector<std::vector<TokenLogprobs>> scores(num_entries);
  const size_t total = prompt_rows.rows.size();
  for (size_t at = 0; at < total; at += static_cast<size_t>(max_seqs_)) {
    const int m = static_cast<int>(std::min(total - at, static_cast<size_t>(max_seqs_)));
    auto slice = [&](const auto& v) {
      return std::vector(v.begin() + static_cast<ptrdiff_t>(at),
                         v.begin() + static_cast<ptrdiff_t>(at + m));
    };
    part.rows = slice(prompt_rows.rows);
    part.entries = slice(prompt_rows.entries);
    part.targets = slice(prompt_rows.targets);
    part.top = slice(prompt_rows.top);
    int32_t* sel_host = host_inputs_.as<int32_t>(layout_.logits_rows);
    std::memcpy(sel_host, part.rows.data(), sizeof(int32_t) * m);
    int32_t* sel = inputs_.as<int32_t>(layout_.logits_rows);
    SLUICE_RETURN_IF_ERROR(
        Cuda(cudaMemcpyAsync(sel, sel_host, sizeof(int32_t) * m, cudaMemcpyHostToDevice, stream_),
             "prompt rows"));
    SLUICE_RETURN_IF_ERROR(Kernel(kc::GatherRows(gathered_hidden_, hidden_, sel, m, h, stream_)));
    SLUICE_RETURN_IF_ERROR(
        Kernel(kc::GatherRows(gathered_residual_, residual_, sel, m, h, stream_)));
    SLUICE_RETURN_IF_ERROR(Kernel(kc::FusedAddRmsNorm(gathered_hidden_, gathered_residual_,
                                                      final_norm_, m, h, eps, stream_)));
    SLUICE_RETURN_IF_ERROR(
        Kernel(gemm_lm_head_->RunFloat(logits_.as<float>(), gathered_hidden_, lm_head_, nullptr, m,
                                       gemm_ws_.as<void>(), stream_)));
    host_logits.resize(static_cast<size_t>(m) * vocab);
    SLUICE_RETURN_IF_ERROR(
        Cuda(cudaMemcpyAsync(host_logits.data(), logits_.as<float>(),
                             sizeof(float) * host_logits.size(), cudaMemcpyDeviceToHost, stream_),
             "prompt logits"));
    SLUICE_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(stream_), "prompt scores"));
    std::vector<std::vector<TokenLogprobs>> got =
        RequestTable::ScorePrompts(part, host_logits.data(), vocab, num_entries);
    for (size_t e = 0; e < num_entries; ++e) {
      for (TokenLogprobs& t : got[e]) scores[e].push_back(std::move(t));
    }
  }
  return scores;
}

size_t CudaRunner::StageInputs(const ForwardBatch& b,
                               const std::vector<RequestTable::Seq*>& sampling_seqs, int padded) {
  const int n = b.num_tokens();
  const int rows = static_cast<int>(b.logits_rows.size());
  char* h = host_inputs_.as<char>();
  auto put = [&](size_t off, const void* src, size_t bytes) { std::memcpy(h + off, src, bytes); };
  put(layout_.ids, b.input_ids.data(), sizeof(int32_t) * n);
  put(layout_.positions, b.positions.data(), sizeof(int32_t) * n);
  put(layout_.slots, b.slot_mapping.data(), sizeof(int64_t) * n);
  for (int i = n; i < padded; ++i) {
    host_inputs_.as<int32_t>(layout_.ids)[i] = 0;
    host_inputs_.as<int32_t>(layout_.positions)[i] = 0;
    host_inputs_.as<int64_t>(layout_.slots)[i] = -1;
  }
  put(layout_.logits_rows, b.logits_rows.data(), sizeof(int32_t) * rows);
  put(layout_.seq_lens, b.seq_lens.data(), sizeof(int32_t) * b.num_seqs());
  put(layout_.cu_seqlens, b.cu_seqlens_q.data(), sizeof(int32_t) * (b.num_seqs() + 1));
  kernels::SamplingRow* sampling = host_inputs_.as<kernels::SamplingRow>(layout_.sampling);
  for (int i = 0; i < rows; ++i) {
    sampling[i] = RequestTable::SamplingFor(*sampling_seqs[i]);
    sampling[i].mask_row = masks_.mask_row(static_cast<size_t>(i));
  }
  for (int i = rows; i < padded; ++i) {
    sampling[i] = kernels::SamplingRow();
    sampling[i].temperature = 0.0f;
  }
  const size_t table_bytes = sizeof(int32_t) * b.block_tables.size();
  put(layout_.block_tables, b.block_tables.data(), table_bytes);
  return layout_.block_tables + table_bytes;
}

absl::StatusOr<StepResult> CudaRunner::CollectSampled(
    const std::vector<RequestTable::Seq*>& sampling_seqs, int rows) {
  int32_t* sampled = host_sampled_.as<int32_t>();
  SLUICE_RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(sampled, sampled_.as<void>(), sizeof(int32_t) * rows,
                                              cudaMemcpyDeviceToHost, stream_),
                              "sampled ids"));
  // Rows that adjust their logits or want logprobs need the logits on the host.
  const int vocab = config_.vocab_size;
  std::vector<std::vector<float>> host_logits(rows);
  for (int i = 0; i < rows; ++i) {
    const SamplingParams& p = sampling_seqs[i]->params;
    if (!AdjustsLogits(p) && p.logprobs < 0) continue;
    host_logits[i].resize(vocab);
    SLUICE_RETURN_IF_ERROR(
        Cuda(cudaMemcpyAsync(host_logits[i].data(), logits_.as<float>() + size_t(i) * vocab,
                             sizeof(float) * vocab, cudaMemcpyDeviceToHost, stream_),
             "logits"));
  }
  SLUICE_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(stream_), "step"));

  StepResult result;
  for (int i = 0; i < rows; ++i) {
    RequestTable::Seq& s = *sampling_seqs[i];
    int32_t id = sampled[i];
    TokenLogprobs logprobs;
    bool grammar_done = false;
    if (!host_logits[i].empty()) {
      // The logits came back masked already; the mask is applied again for the record.
      SLUICE_ASSIGN_OR_RETURN(
          logprobs, RequestTable::SampleOnHost(s, host_logits[i].data(), vocab,
                                               masks_.row(static_cast<size_t>(i)), false, &id));
    }
    SLUICE_RETURN_IF_ERROR(RequestTable::AdvanceGrammar(s, id, &grammar_done));
    RequestTable::Append(s, id);
    result.sampled.push_back(id);
    result.logprobs.push_back(std::move(logprobs));
    result.grammar_done.push_back(grammar_done);
  }
  return result;
}

}  // namespace cuda_runner_internal

using cuda_runner_internal::Cuda;
using cuda_runner_internal::CudaRunner;
using cuda_runner_internal::DeviceMemory;

bool CudaBackendBuilt() { return true; }

absl::StatusOr<double> MeasureCudaCopyBandwidth(int device) {
  SLUICE_RETURN_IF_ERROR(Cuda(cudaSetDevice(device), "selecting the device"));
  constexpr size_t kBytes = size_t{1} << 30;
  DeviceMemory src, dst;
  SLUICE_RETURN_IF_ERROR(src.Allocate(kBytes, "copy source"));
  SLUICE_RETURN_IF_ERROR(dst.Allocate(kBytes, "copy destination"));
  cudaEvent_t begin = nullptr, end = nullptr;
  absl::Status st = Cuda(cudaEventCreate(&begin), "event");
  if (st.ok()) st = Cuda(cudaEventCreate(&end), "event");
  float best_ms = 0.0f;
  for (int i = 0; i < 6 && st.ok(); ++i) {
    st = Cuda(cudaEventRecord(begin), "event record");
    if (st.ok()) {
      st = Cuda(cudaMemcpyAsync(dst.as<void>(), src.as<void>(), kBytes, cudaMemcpyDeviceToDevice),
                "copy");
    }
    if (st.ok()) st = Cuda(cudaEventRecord(end), "event record");
    if (st.ok()) st = Cuda(cudaEventSynchronize(end), "copy");
    float ms = 0.0f;
    if (st.ok()) st = Cuda(cudaEventElapsedTime(&ms, begin, end), "event time");
    if (st.ok() && i > 0 && (best_ms == 0.0f || ms < best_ms)) best_ms = ms;  // 0 warms up
  }
  if (begin != nullptr) cudaEventDestroy(begin);
  if (end != nullptr) cudaEventDestroy(end);
  SLUICE_RETURN_IF_ERROR(st);
  if (best_ms <= 0.0f) return absl::InternalError("copy bandwidth: no timing");
  return 2.0 * kBytes / (best_ms * 1e-3) / 1e9;
}

absl::StatusOr<std::unique_ptr<Runner>> CreateCudaRunner(const CudaRunnerOptions& options,
                                                         CudaRunnerInfo* info) {
  CudaRunnerInfo local;
  auto runner = std::make_unique<CudaRunner>(options);
  SLUICE_RETURN_IF_ERROR(runner->Init(info != nullptr ? info : &local));
  return std::unique_ptr<Runner>(std::move(runner));
}

}  // namespace sluice
