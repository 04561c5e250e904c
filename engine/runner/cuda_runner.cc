#include "engine/runner/cuda_runner.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/runner/host_sampling.h"
#include "engine/runner/request_table.h"
#include "sluice/kernels/cuda/activation.h"
#include "sluice/kernels/cuda/attention.h"
#include "sluice/kernels/cuda/embedding.h"
#include "sluice/kernels/cuda/gather.h"
#include "sluice/kernels/cuda/gemm.h"
#include "sluice/kernels/cuda/norm.h"
#include "sluice/kernels/cuda/qkv.h"
#include "sluice/kernels/cuda/random.h"
#include "sluice/kernels/cuda/sampling.h"
#include "sluice/kernels/rope.h"
#include "spdlog/spdlog.h"

namespace sluice {
namespace {

using kernels::bf16;
namespace kc = kernels::cuda;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
// Memory kept free beyond the budget's own accounting (graph pools, cuBLAS, the driver).
constexpr size_t kHeadroomBytes = size_t{512} << 20;

absl::Status Cuda(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("cuda: ", what, ": ", cudaGetErrorString(err)));
}

absl::Status Kernel(const kernels::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return s.code() == kernels::StatusCode::kInvalidArgument ? absl::InvalidArgumentError(s.message())
                                                           : absl::InternalError(s.message());
}

// One device allocation, freed with the owner.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  ~DeviceMemory() {
    if (p_ != nullptr) cudaFree(p_);
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  absl::Status Allocate(size_t bytes, const std::string& what) {
    if (p_ != nullptr) cudaFree(p_);
    p_ = nullptr;
    bytes_ = 0;
    if (bytes == 0) return absl::OkStatus();
    SLUICE_RETURN_IF_ERROR(Cuda(
        cudaMalloc(&p_, bytes),
        absl::StrCat("allocating ", what, " (", absl::StrFormat("%.2f", bytes / kGiB), " GiB)")));
    bytes_ = bytes;
    return absl::OkStatus();
  }
  template <class T>
  T* as(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(p_) + byte_offset);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Page-locked host memory, for the copies that overlap nothing but must not stage.
class PinnedMemory {
 public:
  ~PinnedMemory() {
    if (p_ != nullptr) cudaFreeHost(p_);
  }
  absl::Status Allocate(size_t bytes) {
    return Cuda(cudaMallocHost(&p_, bytes), "allocating pinned host memory");
  }
  template <class T>
  T* as(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(p_) + byte_offset);
  }

 private:
  void* p_ = nullptr;
};

size_t Align(size_t x, size_t a = 256) { return (x + a - 1) / a * a; }

struct DeviceLayer {
  bf16 *input_norm = nullptr, *qkv = nullptr, *qkv_bias = nullptr, *o_proj = nullptr,
       *post_norm = nullptr, *gate_up = nullptr, *down_proj = nullptr;
};

// The step inputs, at fixed offsets in one device buffer and its pinned host mirror, so
// that one copy moves them and graphs see the same addresses every step. Block tables
// come last: only the rows in use are copied.
struct InputLayout {
  size_t ids = 0, positions = 0, logits_rows = 0, seq_lens = 0, cu_seqlens = 0, slots = 0,
         sampling = 0, block_tables = 0, total = 0;

  InputLayout(int max_tokens, int max_seqs, int max_blocks_per_seq) {
    size_t at = 0;
    auto take = [&](size_t bytes) {
      const size_t off = at;
      at = Align(at + bytes);
      return off;
    };
    ids = take(sizeof(int32_t) * max_tokens);
    positions = take(sizeof(int32_t) * max_tokens);
    logits_rows = take(sizeof(int32_t) * max_seqs);
    seq_lens = take(sizeof(int32_t) * max_seqs);
    cu_seqlens = take(sizeof(int32_t) * (max_seqs + 1));
    slots = take(sizeof(int64_t) * max_tokens);
    sampling = take(sizeof(kernels::SamplingRow) * max_seqs);
    block_tables = take(sizeof(int32_t) * size_t(max_seqs) * max_blocks_per_seq);
    total = at;
  }
};

class CudaRunner : public Runner {
 public:
  explicit CudaRunner(CudaRunnerOptions options)
      : options_(std::move(options)), table_(options_.block_size) {}
  ~CudaRunner() override;

  absl::Status Init(CudaRunnerInfo* info);

  absl::StatusOr<StepResult> Execute(const SchedulerOutput& output) override;
  int num_kv_blocks() const override { return shape_.num_blocks; }
  int block_size() const override { return shape_.block_size; }
  int vocab_size() const override { return config_.vocab_size; }
  int num_requests() const override { return static_cast<int>(table_.size()); }

 private:
  absl::Status AllocateWeights();
  absl::Status LoadCheckpoint();
  absl::Status FillRandom();
  absl::Status AllocateBuffers();
  absl::Status AllocateKvCache(CudaRunnerInfo* info);
  absl::Status CaptureGraphs(CudaRunnerInfo* info);
  absl::Status TuneGemms(CudaRunnerInfo* info);

  // Runs piece k of the forward pass over n token rows (see the header). The last piece
  // computes logits and samples for `rows` rows: all n rows when gather is false (decode
  // graphs), else the rows listed in the inputs' logits_rows.
  absl::Status RunPiece(int k, int n, int rows, bool gather);
  absl::Status QkvPart(int layer, int n);
  absl::Status Attention(int layer);
  absl::Status PrepareAttention(const ForwardBatch& b);
  // The forward pass of a staged step: graphs when `graph` >= 0 (index into graphs_).
  absl::Status Forward(int n, int rows, bool gather, int graph);

  // Where (layer, slot) of the weights lives; layer -1 for the per-model slots.
  static size_t WeightIndex(int layer, WeightSlot slot) {
    return static_cast<size_t>(layer + 1) * kNumWeightSlots + static_cast<size_t>(slot);
  }
  bf16* Weight(int layer, WeightSlot slot) const {
    return weights_.as<bf16>(weight_offsets_[WeightIndex(layer, slot)]);
  }
  // Layer l's K pool, then its V pool, each [num_blocks, block_size, kv_heads, head_dim].
  bf16* KCache(int layer) const { return kv_.as<bf16>(PoolBytes() * (2 * layer)); }
  bf16* VCache(int layer) const { return kv_.as<bf16>(PoolBytes() * (2 * layer + 1)); }
  size_t PoolBytes() const {
    return size_t(shape_.num_blocks) * shape_.BlockElems() * sizeof(bf16);
  }
  // Padded batch size of a decode batch of n rows, or -1 when no graph serves it.
  int GraphIndex(int n) const;

  CudaRunnerOptions options_;
  ModelConfig config_;
  RequestTable table_;
  kernels::KvCacheShape shape_;
  kernels::QkvLayout qkv_layout_;
  cudaStream_t stream_ = nullptr;
  int max_tokens_ = 0;  // rows of the activation buffers
  int max_seqs_ = 0;    // rows of the logits and sampling buffers
  int max_blocks_per_seq_ = 0;

  // Weights.
  DeviceMemory weights_;
  std::vector<size_t> weight_offsets_;  // by WeightIndex
  bf16 *embed_ = nullptr, *final_norm_ = nullptr, *lm_head_ = nullptr;
  std::vector<DeviceLayer> layers_;
  std::unique_ptr<kc::GemmRunner> gemm_qkv_, gemm_o_, gemm_gate_up_, gemm_down_, gemm_lm_head_;

  // Activations and step state.
  DeviceMemory acts_, logits_, gemm_ws_, attn_ws_, inputs_, cos_sin_, sampled_;
  bf16 *hidden_ = nullptr, *residual_ = nullptr, *qkv_ = nullptr, *q_ = nullptr, *attn_ = nullptr,
       *gate_up_ = nullptr, *act_ = nullptr, *gathered_hidden_ = nullptr,
       *gathered_residual_ = nullptr;
  PinnedMemory host_inputs_, host_sampled_;
  InputLayout layout_{0, 0, 0};
  kc::PagedAttentionPlan plan_;
  kernels::PagedAttentionParams attn_params_;

  DeviceMemory kv_;

  // graphs_[g][k]: piece k for padded batch size graph_sizes_[g].
  std::vector<int> graph_sizes_;
  std::vector<std::vector<cudaGraphExec_t>> graphs_;
};

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

  SLUICE_ASSIGN_OR_RETURN(config_, LoadModelConfig(options_.model_dir));
  const ModelConfig& c = config_;
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
  SLUICE_RETURN_IF_ERROR(AllocateBuffers());
  if (options_.tune_gemms) SLUICE_RETURN_IF_ERROR(TuneGemms(info));
  SLUICE_RETURN_IF_ERROR(AllocateKvCache(info));
  // The uploads ran on the legacy stream, the fills and warm-ups on stream_: all done.
  SLUICE_RETURN_IF_ERROR(Cuda(cudaDeviceSynchronize(), "loading the model"));
  if (!options_.enforce_eager) SLUICE_RETURN_IF_ERROR(CaptureGraphs(info));
  return Cuda(cudaDeviceSynchronize(), "initialisation");
}

absl::Status CudaRunner::AllocateWeights() {
  const ModelConfig& c = config_;
  // Offsets of every (layer, slot) in one allocation.
  size_t total = 0;
  weight_offsets_.assign(WeightIndex(c.num_layers, WeightSlot::kEmbed), 0);
  ForEachWeight(c, [&](int layer, WeightSlot slot) {
    weight_offsets_[WeightIndex(layer, slot)] = total;
    total = Align(total + sizeof(bf16) * SlotElements(c, slot));
  });
  size_t free_bytes = 0, total_bytes = 0;
  SLUICE_RETURN_IF_ERROR(Cuda(cudaMemGetInfo(&free_bytes, &total_bytes), "memory info"));
  const double budget =
      options_.gpu_memory_utilization * total_bytes - static_cast<double>(total_bytes - free_bytes);
  if (static_cast<double>(total) + kHeadroomBytes > budget) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "the model's weights take %.2f GiB in bf16, but the GPU has %.2f GiB, %.2f GiB free, and "
        "--gpu-memory-utilization %.2f leaves %.2f GiB for this process (%.2f GiB kept as "
        "headroom)",
        total / kGiB, total_bytes / kGiB, free_bytes / kGiB, options_.gpu_memory_utilization,
        std::max(0.0, budget) / kGiB, kHeadroomBytes / kGiB));
  }
  SLUICE_RETURN_IF_ERROR(weights_.Allocate(total, "weights"));
  layers_.resize(c.num_layers);
  auto at = [&](int layer, WeightSlot slot) {
    return HasSlot(c, slot) ? Weight(layer, slot) : nullptr;
  };
  embed_ = at(-1, WeightSlot::kEmbed);
  final_norm_ = at(-1, WeightSlot::kFinalNorm);
  lm_head_ = c.tie_word_embeddings ? embed_ : at(-1, WeightSlot::kLmHead);
  for (int l = 0; l < c.num_layers; ++l) {
    DeviceLayer& d = layers_[l];
    d.input_norm = at(l, WeightSlot::kInputNorm);
    d.qkv = at(l, WeightSlot::kQkv);
    d.qkv_bias = at(l, WeightSlot::kQkvBias);
    d.o_proj = at(l, WeightSlot::kOProj);
    d.post_norm = at(l, WeightSlot::kPostNorm);
    d.gate_up = at(l, WeightSlot::kGateUp);
    d.down_proj = at(l, WeightSlot::kDownProj);
  }
  return absl::OkStatus();
}

absl::Status CudaRunner::LoadCheckpoint() {
  SLUICE_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::OpenDir(options_.model_dir));
  // Elements already written to each (layer, slot): q, k, v arrive one after another.
  std::vector<int64_t> filled(weight_offsets_.size(), 0);
  std::vector<bf16> staging;
  return ReadWeights(
      *ckpt, config_,
      [&](int layer, WeightSlot slot, std::vector<float>&& values) -> absl::Status {
        int64_t& done = filled[WeightIndex(layer, slot)];
        if (done + static_cast<int64_t>(values.size()) > SlotElements(config_, slot)) {
          return absl::InternalError("weights: a slot received more values than it holds");
        }
        staging.resize(values.size());
        for (size_t i = 0; i < values.size(); ++i) staging[i] = kernels::FloatToBf16(values[i]);
        bf16* dst = Weight(layer, slot) + done;
        done += static_cast<int64_t>(values.size());
        return Cuda(
            cudaMemcpy(dst, staging.data(), staging.size() * sizeof(bf16), cudaMemcpyHostToDevice),
            "uploading weights");
      },
      options_.progress);
}

absl::Status CudaRunner::FillRandom() {
  const ModelConfig& c = config_;
  absl::Status status;
  ForEachWeight(c, [&](int layer, WeightSlot slot) {
    if (!status.ok()) return;
    const RandomRange range = RandomRangeOf(c, slot);
    status = Kernel(kc::FillUniform(Weight(layer, slot), SlotElements(c, slot), options_.seed,
                                    RandomStream(layer, slot), 0, range.lo, range.hi, stream_));
  });
  SLUICE_RETURN_IF_ERROR(status);
  if (options_.progress) options_.progress(c.num_layers, c.num_layers);
  return absl::OkStatus();
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
  SLUICE_RETURN_IF_ERROR(gemm(h, q_width, false, &gemm_o_));
  SLUICE_RETURN_IF_ERROR(gemm(2 * c.intermediate_size, h, false, &gemm_gate_up_));
  SLUICE_RETURN_IF_ERROR(gemm(h, c.intermediate_size, false, &gemm_down_));
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
               o_attn = take(size_t(T) * q_width),
               o_gate_up = take(size_t(T) * 2 * c.intermediate_size),
               o_act = take(size_t(T) * c.intermediate_size), o_gh = take(size_t(S) * h),
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
  SLUICE_RETURN_IF_ERROR(attn_ws_.Allocate(size_t{16} << 20, "attention workspace"));
  SLUICE_RETURN_IF_ERROR(sampled_.Allocate(sizeof(int32_t) * S, "sampled ids"));
  SLUICE_RETURN_IF_ERROR(host_sampled_.Allocate(sizeof(int32_t) * S));

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

absl::Status CudaRunner::TuneGemms(CudaRunnerInfo* info) {
  const auto start = std::chrono::steady_clock::now();
  // Zeros, not leftovers: the timings must not meet NaNs or denormals.
  SLUICE_RETURN_IF_ERROR(
      Cuda(cudaMemsetAsync(acts_.as<void>(), 0, acts_.bytes(), stream_), "zero"));
  void* ws = gemm_ws_.as<void>();
  // Up to 8 layers' matrices, cycled through by the timed calls.
  auto of = [&](bf16* DeviceLayer::*slot) {
    std::vector<const bf16*> v;
    for (size_t l = 0; l < layers_.size() && l < 8; ++l) v.push_back(layers_[l].*slot);
    return v;
  };
  const bf16* bias = layers_[0].qkv_bias;
  SLUICE_RETURN_IF_ERROR(
      Kernel(gemm_qkv_->Tune(qkv_, hidden_, of(&DeviceLayer::qkv), bias, ws, stream_)));
  SLUICE_RETURN_IF_ERROR(
      Kernel(gemm_o_->Tune(hidden_, attn_, of(&DeviceLayer::o_proj), nullptr, ws, stream_)));
  SLUICE_RETURN_IF_ERROR(Kernel(
      gemm_gate_up_->Tune(gate_up_, hidden_, of(&DeviceLayer::gate_up), nullptr, ws, stream_)));
  SLUICE_RETURN_IF_ERROR(
      Kernel(gemm_down_->Tune(hidden_, act_, of(&DeviceLayer::down_proj), nullptr, ws, stream_)));
  SLUICE_RETURN_IF_ERROR(Kernel(gemm_lm_head_->Tune(logits_.as<float>(), gathered_hidden_,
                                                    {lm_head_}, nullptr, ws, stream_)));
  info->gemm_tune_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return absl::OkStatus();
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
      inputs_.as<int64_t>(layout_.slots), cos_sin_.as<float>(), n, qkv_layout_, shape_, stream_));
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
  SLUICE_RETURN_IF_ERROR(Kernel(gemm_o_->Run(hidden_, attn_, w.o_proj, nullptr, n, ws, stream_)));
  SLUICE_RETURN_IF_ERROR(
      Kernel(kc::FusedAddRmsNorm(hidden_, residual_, w.post_norm, n, h, eps, stream_)));
  SLUICE_RETURN_IF_ERROR(
      Kernel(gemm_gate_up_->Run(gate_up_, hidden_, w.gate_up, nullptr, n, ws, stream_)));
  SLUICE_RETURN_IF_ERROR(Kernel(kc::SiluAndMul(act_, gate_up_, n, c.intermediate_size, stream_)));
  SLUICE_RETURN_IF_ERROR(
      Kernel(gemm_down_->Run(hidden_, act_, w.down_proj, nullptr, n, ws, stream_)));
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
  return Kernel(kc::Sample(sampled_.as<int32_t>(), logits_.as<float>(),
                           inputs_.as<kernels::SamplingRow>(layout_.sampling), rows, c.vocab_size,
                           stream_));
}

absl::Status CudaRunner::PrepareAttention(const ForwardBatch& b) {
  const ModelConfig& c = config_;
  kernels::PagedAttentionParams& p = attn_params_;
  p.num_seqs = b.num_seqs();
  p.num_q_heads = c.num_q_heads;
  p.num_kv_heads = c.num_kv_heads;
  p.head_dim = c.head_dim;
  p.block_size = shape_.block_size;
  p.max_blocks_per_seq = std::max(1, b.max_blocks_per_seq);
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  p.block_tables = inputs_.as<int32_t>(layout_.block_tables);
  p.seq_lens = inputs_.as<int32_t>(layout_.seq_lens);
  p.cu_seqlens_q = inputs_.as<int32_t>(layout_.cu_seqlens);
  SLUICE_RETURN_IF_ERROR(
      Kernel(kc::PlanPagedAttention(p, b.seq_lens.data(), b.cu_seqlens_q.data(), &plan_)));
  if (plan_.workspace_bytes > attn_ws_.bytes()) {
    // Grows between steps; the stream holds no work that reads the old workspace yet.
    SLUICE_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(stream_), "attention workspace"));
    SLUICE_RETURN_IF_ERROR(attn_ws_.Allocate(plan_.workspace_bytes * 2, "attention workspace"));
  }
  return Kernel(
      kc::UploadPagedAttentionPlan(plan_, attn_ws_.as<void>(), attn_ws_.bytes(), stream_));
}

absl::Status CudaRunner::Attention(int layer) {
  return Kernel(kc::PagedAttention(plan_, attn_params_, attn_, q_, KCache(layer), VCache(layer),
                                   attn_ws_.as<void>(), stream_));
}

absl::Status CudaRunner::Forward(int n, int rows, bool gather, int graph) {
  for (int k = 0; k <= config_.num_layers; ++k) {
    if (graph >= 0) {
      SLUICE_RETURN_IF_ERROR(Cuda(cudaGraphLaunch(graphs_[graph][k], stream_), "graph launch"));
    } else {
      SLUICE_RETURN_IF_ERROR(RunPiece(k, n, rows, gather));
    }
    if (k < config_.num_layers) SLUICE_RETURN_IF_ERROR(Attention(k));
  }
  return absl::OkStatus();
}

int CudaRunner::GraphIndex(int n) const {
  for (size_t g = 0; g < graph_sizes_.size(); ++g) {
    if (graph_sizes_[g] >= n) return static_cast<int>(g);
  }
  return -1;
}

absl::Status CudaRunner::CaptureGraphs(CudaRunnerInfo* info) {
  const auto start = std::chrono::steady_clock::now();
  for (int b : {1, 2, 4}) {
    if (b < max_seqs_) graph_sizes_.push_back(b);
  }
  for (int b = 8; b < max_seqs_; b += 8) graph_sizes_.push_back(b);
  graph_sizes_.push_back(max_seqs_);
  // Inputs of a padded batch: token 0 at position 0, slot -1, greedy sampling. The pieces
  // never read seq_lens or block tables (attention runs outside the graphs).
  int32_t* ids = host_inputs_.as<int32_t>(layout_.ids);
  int32_t* pos = host_inputs_.as<int32_t>(layout_.positions);
  int64_t* slots = host_inputs_.as<int64_t>(layout_.slots);
  kernels::SamplingRow* sampling = host_inputs_.as<kernels::SamplingRow>(layout_.sampling);
  for (int i = 0; i < max_tokens_; ++i) {
    ids[i] = 0;
    pos[i] = 0;
    slots[i] = -1;
  }
  for (int i = 0; i < max_seqs_; ++i) {
    sampling[i] = kernels::SamplingRow();
    sampling[i].temperature = 0.0f;
  }
  SLUICE_RETURN_IF_ERROR(
      Cuda(cudaMemcpyAsync(inputs_.as<void>(), host_inputs_.as<void>(), layout_.block_tables,
                           cudaMemcpyHostToDevice, stream_),
           "graph inputs"));
  graphs_.assign(graph_sizes_.size(),
                 std::vector<cudaGraphExec_t>(config_.num_layers + 1, nullptr));
  // Largest first: smaller graphs reuse the memory pool of larger ones.
  for (int g = static_cast<int>(graph_sizes_.size()) - 1; g >= 0; --g) {
    const int b = graph_sizes_[g];
    for (int k = 0; k <= config_.num_layers; ++k) {
      // One eager run first: cuBLASLt settles its state outside capture.
      SLUICE_RETURN_IF_ERROR(RunPiece(k, b, b, false));
      SLUICE_RETURN_IF_ERROR(
          Cuda(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "begin capture"));
      const absl::Status run = RunPiece(k, b, b, false);
      cudaGraph_t graph = nullptr;
      const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
      if (!run.ok() && graph != nullptr) cudaGraphDestroy(graph);
      SLUICE_RETURN_IF_ERROR(run);
      SLUICE_RETURN_IF_ERROR(Cuda(end, "end capture"));
      const cudaError_t inst = cudaGraphInstantiate(&graphs_[g][k], graph, 0);
      cudaGraphDestroy(graph);
      SLUICE_RETURN_IF_ERROR(
          Cuda(inst, absl::StrCat("instantiating the graph of piece ", k, " at batch ", b)));
    }
  }
  info->num_graphs = static_cast<int>(graph_sizes_.size()) * (config_.num_layers + 1);
  SLUICE_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(stream_), "graph capture"));
  info->graph_capture_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return absl::OkStatus();
}

absl::StatusOr<StepResult> CudaRunner::Execute(const SchedulerOutput& output) {
  // The engine thread is not the one that loaded the model: the device is per thread.
  SLUICE_RETURN_IF_ERROR(Cuda(cudaSetDevice(options_.device), "selecting the device"));
  table_.Apply(output);
  SLUICE_ASSIGN_OR_RETURN(ForwardBatch b, table_.Build(output));
  const int n = b.num_tokens();
  const int rows = static_cast<int>(b.logits_rows.size());
  if (n == 0) return StepResult{};  // a step that only retires requests
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
  std::vector<RequestTable::Seq*> sampling_seqs = table_.Advance(output);
  // A decode batch in which every row samples runs as graphs, padded.
  const bool decode = n == b.num_seqs() && rows == n;
  const int graph = decode && !graphs_.empty() ? GraphIndex(n) : -1;
  const int padded = graph >= 0 ? graph_sizes_[graph] : n;

  // Stage the inputs.
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
  for (int i = 0; i < rows; ++i) sampling[i] = RequestTable::SamplingFor(*sampling_seqs[i]);
  for (int i = rows; i < padded; ++i) {
    sampling[i] = kernels::SamplingRow();
    sampling[i].temperature = 0.0f;
  }
  const size_t table_bytes = sizeof(int32_t) * b.block_tables.size();
  put(layout_.block_tables, b.block_tables.data(), table_bytes);
  absl::Status launched =
      Cuda(cudaMemcpyAsync(inputs_.as<void>(), h, layout_.block_tables + table_bytes,
                           cudaMemcpyHostToDevice, stream_),
           "step inputs");
  if (launched.ok()) launched = PrepareAttention(b);
  if (launched.ok()) {
    launched = Forward(graph >= 0 ? padded : n, graph >= 0 ? padded : rows,
                       /*gather=*/graph < 0, graph);
  }
  if (!launched.ok()) {
    // What was queued finishes before the staging buffer is written again.
    cudaStreamSynchronize(stream_);
    return launched;
  }

  int32_t* sampled = host_sampled_.as<int32_t>();
  SLUICE_RETURN_IF_ERROR(Cuda(cudaMemcpyAsync(sampled, sampled_.as<void>(), sizeof(int32_t) * rows,
                                              cudaMemcpyDeviceToHost, stream_),
                              "sampled ids"));
  // Rows with penalties or logprobs need their logits on the host.
  const int vocab = config_.vocab_size;
  std::vector<std::vector<float>> host_logits(rows);
  for (int i = 0; i < rows; ++i) {
    const SamplingParams& p = sampling_seqs[i]->params;
    if (!HasPenalties(p) && p.logprobs < 0) continue;
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
    if (!host_logits[i].empty()) {
      SLUICE_ASSIGN_OR_RETURN(logprobs, RequestTable::SampleOnHost(s, host_logits[i].data(), vocab,
                                                                   /*draw=*/false, &id));
    }
    RequestTable::Append(s, id);
    result.sampled.push_back(id);
    result.logprobs.push_back(std::move(logprobs));
  }
  return result;
}

}  // namespace

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
