// Model weights: where each checkpoint tensor goes in a backend's layout (q/k/v fused into
// one projection, gate/up into another), read from a checkpoint or drawn at random, and the
// CPU backend's fp32 host copy of them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/config.h"
#include "engine/model/fp8.h"
#include "engine/model/safetensors.h"

namespace sluice {

// The tensors of a Llama-family model in the fused layout every backend uses.
enum class WeightSlot {
  kEmbed,      // [vocab, hidden]
  kInputNorm,  // [hidden]
  kQkv,        // [(q_heads + 2 * kv_heads) * head_dim, hidden]: q rows, then k, then v
  kQkvBias,    // [(q_heads + 2 * kv_heads) * head_dim] (config.attention_bias only)
  kOProj,      // [hidden, q_heads * head_dim]
  kPostNorm,   // [hidden]
  kGateUp,     // [2 * intermediate, hidden]: gate rows, then up
  kDownProj,   // [hidden, intermediate]
  kFinalNorm,  // [hidden]
  kLmHead,     // [vocab, hidden] (absent when tied to kEmbed)
  kQNorm,      // [head_dim] (config.qk_norm only)
  kKNorm,      // [head_dim] (config.qk_norm only)
  // Mixture-of-experts layers (config.IsMoeLayer), in place of kGateUp and kDownProj:
  kRouter,        // [experts, hidden]
  kExpertGateUp,  // [experts * 2 * moe_intermediate, hidden]: by expert, gate rows then up
  kExpertDown,    // [experts * hidden, moe_intermediate]: by expert
  // gpt-oss:
  kOProjBias,         // [hidden] (config.o_proj_bias)
  kSinks,             // [q_heads] (config.attention_sinks)
  kRouterBias,        // [experts] (config.gpt_oss_moe)
  kExpertGateUpBias,  // [experts * 2 * moe_intermediate]: by expert, gate then up
  kExpertDownBias,    // [experts * hidden]
};
inline constexpr int kNumWeightSlots = 20;

// Elements of `slot` in one layer (or in the model, for the per-model slots).
int64_t SlotElements(const ModelConfig& c, WeightSlot slot);
// Whether the model has this slot at all (biases, an untied lm_head).
bool HasSlot(const ModelConfig& c, WeightSlot slot);
// Whether layer `layer` has it (a mixture-of-experts layer has no dense MLP, and the
// other way round).
bool HasLayerSlot(const ModelConfig& c, int layer, WeightSlot slot);
// Whether `slot` is one per layer.
bool IsLayerSlot(WeightSlot slot);
// Whether `slot` holds every expert of a layer, one after another: gate/up, down and
// their biases.
bool IsExpertSlot(WeightSlot slot);

// Calls fn(layer, slot) for every tensor the model has, slot by slot: per-layer slots for
// layers 0..num_layers-1, per-model slots with layer -1.
void ForEachWeight(const ModelConfig& c, const std::function<void(int layer, WeightSlot slot)>& fn);

// Receives the model's tensors in order; `values` continue `slot` of `layer` (-1 for the
// per-model slots) after what came before (q, k, v in turn for kQkv; gate, up for kGateUp).
using WeightSink =
    std::function<absl::Status(int layer, WeightSlot slot, std::vector<float>&& values)>;

// Called after each layer loads: (layers done, layers total).
using LoadProgress = std::function<void(int, int)>;

// Reads every tensor the config needs from `ckpt` into `sink`. A missing tensor or a shape
// that disagrees with the config is an error naming the tensor and its file. FP8 weights
// (config.fp8) reach the sink dequantized, code * scale, in fp32, and `quant` receives
// how each layer's linear layers quantize their inputs ([num_layers]); a backend that
// passes no `quant` does not compute W8A8 and is refused an FP8 model.
absl::Status ReadWeights(const Checkpoint& ckpt, const ModelConfig& config, const WeightSink& sink,
                         const LoadProgress& progress = nullptr,
                         std::vector<LayerQuant>* quant = nullptr);

// `--random-weights`: element i of (layer, slot) is kernels::UniformAt(seed,
// RandomStream(layer, slot), i, lo, hi) over the slot's RandomRange. Matrices have
// variance 1 / fan_in, norms lie near 1, so activations stay in range at any depth.
struct RandomRange {
  float lo, hi;
};
RandomRange RandomRangeOf(const ModelConfig& c, WeightSlot slot);
uint64_t RandomStream(int layer, WeightSlot slot);

struct LayerWeights {
  std::vector<float> input_norm;      // [hidden]
  std::vector<float> qkv;             // [(q_heads + 2 * kv_heads) * head_dim, hidden] fused
  std::vector<float> qkv_bias;        // [(q_heads + 2 * kv_heads) * head_dim] or empty
  std::vector<float> o_proj;          // [hidden, q_heads * head_dim]
  std::vector<float> post_norm;       // [hidden]
  std::vector<float> gate_up;         // [2 * intermediate, hidden] fused, gate rows first
  std::vector<float> down_proj;       // [hidden, intermediate]
  std::vector<float> q_norm, k_norm;  // [head_dim] each, or empty
  std::vector<float> router;          // [experts, hidden], or empty
  std::vector<float> expert_gate_up;  // [experts * 2 * moe_intermediate, hidden]
  std::vector<float> expert_down;     // [experts * hidden, moe_intermediate]
  std::vector<float> o_bias, sinks, router_bias, expert_gate_up_bias, expert_down_bias;
  LayerQuant quant;  // FP8 models: how each linear layer quantizes its input
};

// The CPU backend's weights, fp32 in host memory.
struct ModelWeights {
  std::vector<float> embed;          // [vocab, hidden]
  std::vector<LayerWeights> layers;  // [num_layers]
  std::vector<float> final_norm;     // [hidden]
  std::vector<float> lm_head;        // [vocab, hidden]; empty when tied to embed

  const std::vector<float>& LmHead() const { return lm_head.empty() ? embed : lm_head; }
  // The vector holding `slot` of `layer`.
  std::vector<float>& Slot(int layer, WeightSlot slot);
};

// Reads and converts every tensor the config needs (see ReadWeights).
absl::StatusOr<ModelWeights> LoadWeights(const Checkpoint& ckpt, const ModelConfig& config,
                                         const LoadProgress& progress = nullptr);

// The random model of `seed` (see RandomRangeOf), in fp32; with config.fp8.on_load, its
// linear layers quantized as `--quantization fp8` quantizes a checkpoint.
absl::StatusOr<ModelWeights> RandomWeights(const ModelConfig& config, uint64_t seed);

}  // namespace sluice
