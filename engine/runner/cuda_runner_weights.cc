// The CUDA runner's weights: one device allocation holding every (layer, slot) in bf16
// (fused QKV and gate/up), filled from the checkpoint or with the seeded random values of
// RandomWeights, and the optional timing of cuBLASLt's candidates over them.
#include <cuda_runtime.h>

#include <chrono>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/model/weights.h"
#include "engine/runner/cuda_runner_internal.h"
#include "sluice/kernels/cuda/gemm.h"
#include "sluice/kernels/cuda/random.h"

namespace sluice::cuda_runner_internal {

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
    const bool has = layer < 0 ? HasSlot(c, slot) : HasLayerSlot(c, layer, slot);
    return has ? Weight(layer, slot) : nullptr;
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
    d.q_norm = at(l, WeightSlot::kQNorm);
    d.k_norm = at(l, WeightSlot::kKNorm);
    d.o_proj_bias = at(l, WeightSlot::kOProjBias);
    d.router = at(l, WeightSlot::kRouter);
    d.router_bias = at(l, WeightSlot::kRouterBias);
    d.experts.gate_up = at(l, WeightSlot::kExpertGateUp);
    d.experts.gate_up_bias = at(l, WeightSlot::kExpertGateUpBias);
    d.experts.down = at(l, WeightSlot::kExpertDown);
    d.experts.down_bias = at(l, WeightSlot::kExpertDownBias);
  }
  return absl::OkStatus();
}

absl::Status CudaRunner::ConvertSinks() {
  const ModelConfig& c = config_;
  if (!c.attention_sinks) return absl::OkStatus();
  const size_t heads = static_cast<size_t>(c.num_q_heads);
  std::vector<bf16> raw(heads);
  std::vector<float> sinks(heads * c.num_layers);
  // The weights were uploaded (or filled) on other streams: wait for them.
  SLUICE_RETURN_IF_ERROR(Cuda(cudaDeviceSynchronize(), "loading the model"));
  for (int l = 0; l < c.num_layers; ++l) {
    SLUICE_RETURN_IF_ERROR(Cuda(cudaMemcpy(raw.data(), Weight(l, WeightSlot::kSinks),
                                           heads * sizeof(bf16), cudaMemcpyDeviceToHost),
                                "reading the attention sinks"));
    for (size_t h = 0; h < heads; ++h) sinks[l * heads + h] = kernels::Bf16ToFloat(raw[h]);
  }
  SLUICE_RETURN_IF_ERROR(sinks_.Allocate(sinks.size() * sizeof(float), "attention sinks"));
  SLUICE_RETURN_IF_ERROR(Cuda(cudaMemcpy(sinks_.as<float>(), sinks.data(),
                                         sinks.size() * sizeof(float), cudaMemcpyHostToDevice),
                              "uploading the attention sinks"));
  for (int l = 0; l < c.num_layers; ++l) layers_[l].sinks = sinks_.as<float>() + l * heads;
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

absl::Status CudaRunner::TuneGemms(CudaRunnerInfo* info) {
  const auto start = std::chrono::steady_clock::now();
  // Zeros, not leftovers: the timings must not meet NaNs or denormals.
  SLUICE_RETURN_IF_ERROR(
      Cuda(cudaMemsetAsync(acts_.as<void>(), 0, acts_.bytes(), stream_), "zero"));
  void* ws = gemm_ws_.as<void>();
  // Up to 8 layers' matrices, cycled through by the timed calls.
  auto of = [&](bf16* DeviceLayer::*slot) {
    std::vector<const bf16*> v;
    for (size_t l = 0; l < layers_.size() && v.size() < 8; ++l) {
      if (layers_[l].*slot != nullptr) v.push_back(layers_[l].*slot);
    }
    return v;
  };
  const bf16* bias = layers_[0].qkv_bias;
  SLUICE_RETURN_IF_ERROR(
      Kernel(gemm_qkv_->Tune(qkv_, hidden_, of(&DeviceLayer::qkv), bias, ws, stream_)));
  SLUICE_RETURN_IF_ERROR(Kernel(gemm_o_->Tune(hidden_, attn_, of(&DeviceLayer::o_proj),
                                              layers_[0].o_proj_bias, ws, stream_)));
  if (gemm_gate_up_ != nullptr) {  // some layer is dense
    SLUICE_RETURN_IF_ERROR(Kernel(
        gemm_gate_up_->Tune(gate_up_, hidden_, of(&DeviceLayer::gate_up), nullptr, ws, stream_)));
    SLUICE_RETURN_IF_ERROR(
        Kernel(gemm_down_->Tune(hidden_, act_, of(&DeviceLayer::down_proj), nullptr, ws, stream_)));
  }
  if (gemm_router_ != nullptr) {
    const bf16* router_bias = nullptr;  // the first MoE layer's
    for (const DeviceLayer& d : layers_) {
      if (d.router != nullptr) {
        router_bias = d.router_bias;
        break;
      }
    }
    SLUICE_RETURN_IF_ERROR(Kernel(gemm_router_->Tune(
        router_logits_.as<float>(), hidden_, of(&DeviceLayer::router), router_bias, ws, stream_)));
  }
  SLUICE_RETURN_IF_ERROR(Kernel(gemm_lm_head_->Tune(logits_.as<float>(), gathered_hidden_,
                                                    {lm_head_}, nullptr, ws, stream_)));
  info->gemm_tune_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return absl::OkStatus();
}

}  // namespace sluice::cuda_runner_internal
