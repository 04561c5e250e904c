// Model configuration read from a Hugging Face config.json (+ generation_config.json).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sluice/kernels/moe.h"
#include "sluice/kernels/rope.h"

namespace sluice {

// FP8 weights with FP8 activations (W8A8): how a checkpoint's quantization_config (or
// `--quantization fp8`, which quantizes a 16-bit checkpoint as it loads) scales them.
// Linear layers whose weight is stored in 16 bits (the layout's ignore list) stay so.
struct Fp8Scheme {
  enum class Weights {
    kTensor,   // one `weight_scale` per tensor
    kChannel,  // `weight_scale` [out, 1]: one per output row
    kBlock,    // `weight_scale_inv` [ceil(out / bn), ceil(in / bk)]: one per block
  };
  enum class Inputs {
    kNone,           // weights only: inputs stay in 16 bits
    kPerToken,       // dynamic: one scale per token (row) of the input
    kPerTokenGroup,  // dynamic: one per token and group of input_group columns
    kStatic,         // `input_scale`, one per tensor, fixed at calibration
  };
  bool enabled = false;
  std::string layout;    // "compressed-tensors", "fp8" or "fp8 on load"
  bool on_load = false;  // quantize 16-bit weights as they load (per channel)
  Weights weights = Weights::kChannel;
  Inputs inputs = Inputs::kPerToken;
  int block_n = 0, block_k = 0;  // kBlock: rows and columns of a weight block
  int input_group = 0;           // kPerTokenGroup: columns per input scale
};

struct ModelConfig {
  std::string model_type;  // llama, mistral, qwen2, qwen3, qwen3_moe, mixtral or gpt_oss
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  bool attention_bias = false;  // q/k/v projections carry a bias (qwen2)
  bool qk_norm = false;         // RMSNorm over each head of q and k before RoPE (qwen3, qwen3_moe)
  // Mixture of experts (qwen3_moe, mixtral): in the layers moe_layer marks, the MLP is
  // num_experts SwiGLU experts of moe_intermediate_size, and each token goes to the
  // num_experts_per_tok its router ranks highest (softmax, then top-k; renormalized
  // with norm_topk_prob). Other layers keep the dense MLP of intermediate_size.
  int num_experts = 0;
  int num_experts_per_tok = 0;
  int moe_intermediate_size = 0;
  bool norm_topk_prob = false;
  std::vector<uint8_t> moe_layer;  // [num_layers], or empty for a dense model
  // gpt-oss: top-k of the router's logits (with its bias) then a softmax over them; the
  // experts carry biases and a clamped SwiGLU, (up + 1) * g * sigmoid(alpha * g) with
  // g = min(gate, limit) and up clipped to [-limit, limit].
  bool gpt_oss_moe = false;
  float swiglu_alpha = 1.702f, swiglu_limit = 7.0f;
  bool o_proj_bias = false;       // gpt-oss: the output projection has a bias too
  bool attention_sinks = false;   // gpt-oss: a learned logit per head in each softmax
  std::vector<int> layer_window;  // [num_layers]: sliding window (0: full), or empty
  int LayerWindow(int layer) const {
    return static_cast<size_t>(layer) < layer_window.size() ? layer_window[layer] : 0;
  }
  bool IsMoeLayer(int layer) const {
    return static_cast<size_t>(layer) < moe_layer.size() && moe_layer[layer] != 0;
  }
  // The MoE layers' shape and routing, as the kernels take them.
  kernels::MoeShape MoeShapeOf() const {
    kernels::MoeShape m;
    m.num_experts = num_experts;
    m.top_k = num_experts_per_tok;
    m.hidden = hidden_size;
    m.intermediate = moe_intermediate_size;
    m.routing = gpt_oss_moe ? kernels::MoeRouting::kTopKSoftmax : kernels::MoeRouting::kSoftmaxTopK;
    m.renormalize = norm_topk_prob;
    m.activation =
        gpt_oss_moe ? kernels::MoeActivation::kClampedSwiGlu : kernels::MoeActivation::kSiluAndMul;
    m.swiglu_alpha = swiglu_alpha;
    m.swiglu_limit = swiglu_limit;
    return m;
  }
  bool tie_word_embeddings = false;
  kernels::RopeConfig rope;
  std::vector<int32_t> eos_token_ids;  // from generation_config.json, else config.json
  std::optional<int32_t> bos_token_id;
  Fp8Scheme fp8;  // from quantization_config; gpt-oss's mxfp4 experts are read as stored

  std::string Summary() const;
};

// Parses DIR/config.json (and DIR/generation_config.json when present). Errors name the
// file and the field. `quantization` is the serving flag: "" (as the checkpoint is) or
// "fp8" (FP8 checkpoints as they are, 16-bit ones quantized on load).
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir,
                                            const std::string& quantization = "");

// Parses config.json text; `source` names it in errors.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& text, const std::string& source);

}  // namespace sluice
