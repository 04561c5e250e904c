// FP8 (E4M3) linear layers, as the two published layouts store them: compressed-tensors
// (llm-compressor's exports, such as Llama-3.1-8B-Instruct-FP8: `weight_scale` per tensor
// or per output channel, `input_scale` when inputs are scaled statically) and "fp8"
// (`weight_scale_inv` per 128 x 128 block, as Qwen3 and DeepSeek ship, or one
// `weight_scale` per tensor). The CPU backend keeps each weight as code * scale in fp32
// and quantizes each layer's input as the FP8 GEMM would (InputQuant), so that an fp32
// GEMM computes what the FP8 one does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/config.h"
#include "engine/model/safetensors.h"

namespace sluice {

// How a linear layer quantizes its input before an FP8 GEMM (W8A8; see Fp8Scheme). A layer
// whose weight is not FP8, or a weights-only scheme, leaves it in fp32 (kNone).
struct InputQuant {
  enum class Mode { kNone, kPerToken, kPerTokenGroup, kStatic };
  Mode mode = Mode::kNone;
  int group = 0;       // kPerTokenGroup: columns per scale
  float scale = 0.0f;  // kStatic: the checkpoint's input_scale (the largest of a fused
                       // layer's parts, which share one input)
};
struct LayerQuant {
  InputQuant qkv, o_proj, gate_up, down;
};

// Linear layer `base` (its name less "weight") as the CPU backend holds it: its weight
// `weight` in fp32, and how the layer quantizes its input.
struct Fp8Linear {
  std::vector<float> weight;
  InputQuant input;
};

// An F8_E4M3 weight is dequantized, code * scale, with the scales stored beside it:
// `weight_scale` of one element (per tensor) or [out, 1] (per channel), or, for block
// layouts, `weight_scale_inv` [ceil(out / bn), ceil(in / bk)] (which multiplies, despite
// its name); scales are BF16, F16 or F32, finite and >= 0; static inputs read their
// `input_scale`. A 16-bit weight is as stored, or quantized per channel with
// scheme.on_load (`--quantization fp8`). Errors name the tensor and its file.
absl::StatusOr<Fp8Linear> ReadFp8Linear(const Checkpoint& ckpt, const Fp8Scheme& scheme,
                                        const TensorView& weight, const std::string& base);

// Quantizes each of `rows` rows of `cols` values to E4M3 with its own scale (amax / 448)
// and back, in place: the per-channel weights of `--quantization fp8`.
void QuantizeRowsFp8(std::vector<float>& w, int64_t cols);

}  // namespace sluice
