#include "engine/model/fp8.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/model/config_fields.h"
#include "sluice/kernels/quant.h"

namespace sluice {
namespace config_internal {
namespace {

// Whether object `j` has `key` equal to `want` (of any other type: not equal).
bool Is(const json& j, const char* key, const json& want) {
  return j.contains(key) && j[key] == want;
}

// Two positive integers, as weight_block_size and block_structure give a block.
absl::Status ParseBlock(const json& v, const Fields& f, const std::string& field, Fp8Scheme& s) {
  if (!v.is_array() || v.size() != 2 || !v[0].is_number_integer() || !v[1].is_number_integer() ||
      v[0].get<int64_t>() <= 0 || v[1].get<int64_t>() <= 0 || v[0].get<int64_t>() > 65536 ||
      v[1].get<int64_t>() > 65536) {
    return f.Error(field, "must be two positive integers [rows, columns]");
  }
  s.weights = Fp8Scheme::Weights::kBlock;
  s.block_n = v[0].get<int>();
  s.block_k = v[1].get<int>();
  return absl::OkStatus();
}

// quant_method "fp8": e4m3 weights with `weight_scale_inv` per block when weight_block_size
// is given (as Qwen3 and DeepSeek ship), else one `weight_scale` per tensor.
absl::Status ParseFp8Layout(const json& q, const Fields& f, Fp8Scheme& s) {
  if (f.Has("fmt") && q["fmt"] != "e4m3") return f.Error("fmt", "must be \"e4m3\"");
  std::string scheme = "dynamic";
  if (f.Has("activation_scheme")) {
    if (!q["activation_scheme"].is_string())
      return f.Error("activation_scheme", "must be a string");
    scheme = q["activation_scheme"].get<std::string>();
  }
  if (scheme != "dynamic" && scheme != "static") {
    return f.Error("activation_scheme", "must be \"dynamic\" or \"static\"");
  }
  s.weights = Fp8Scheme::Weights::kTensor;
  s.inputs = scheme == "static" ? Fp8Scheme::Inputs::kStatic : Fp8Scheme::Inputs::kPerToken;
  if (f.Has("weight_block_size")) {
    SLUICE_RETURN_IF_ERROR(ParseBlock(q["weight_block_size"], f, "weight_block_size", s));
    if (scheme == "static") {
      return f.Error("activation_scheme", "must be \"dynamic\" with weight_block_size");
    }
    s.inputs = Fp8Scheme::Inputs::kPerTokenGroup;
    s.input_group = s.block_k;  // inputs in groups as wide as a weight block
  }
  return absl::OkStatus();
}

// One config group of compressed-tensors: 8-bit float weights per tensor, channel or
// block, and inputs dynamic per token (or token group), static per tensor, or none.
absl::Status ParseConfigGroup(const json& g, const std::string& gname, const Fields& f,
                              Fp8Scheme& s) {
  if (!g.is_object()) return f.Error(gname, "must be an object");
  auto fp8 = [&](const json& a, const std::string& name) -> absl::Status {
    if (!a.is_object() || !Is(a, "num_bits", 8) || !Is(a, "type", "float")) {
      return f.Error(name, "must be 8-bit floats (num_bits 8, type \"float\")");
    }
    if (a.contains("symmetric") && a["symmetric"] != true) {
      return f.Error(name + ".symmetric", "must be true");
    }
    if (!a.contains("strategy") || !a["strategy"].is_string()) {
      return f.Error(name + ".strategy", "is missing or not a string");
    }
    return absl::OkStatus();
  };
  if (!g.contains("weights")) return f.Error(gname + ".weights", "is missing");
  const json& w = g["weights"];
  SLUICE_RETURN_IF_ERROR(fp8(w, gname + ".weights"));
  if (w.contains("dynamic") && !Is(w, "dynamic", false))
    return f.Error(gname + ".weights.dynamic", "must be false");
  const std::string ws = w["strategy"].get<std::string>();
  if (ws == "tensor") {
    s.weights = Fp8Scheme::Weights::kTensor;
  } else if (ws == "channel") {
    s.weights = Fp8Scheme::Weights::kChannel;
  } else if (ws == "block") {
    SLUICE_RETURN_IF_ERROR(ParseBlock(w.contains("block_structure") ? w["block_structure"] : json(),
                                      f, gname + ".weights.block_structure", s));
  } else {
    return f.Error(gname + ".weights.strategy", "must be \"tensor\", \"channel\" or \"block\"");
  }
  if (!g.contains("input_activations") || g["input_activations"].is_null()) {
    s.inputs = Fp8Scheme::Inputs::kNone;  // FP8 weights, 16-bit activations
    return absl::OkStatus();
  }
  const json& a = g["input_activations"];
  const std::string an = gname + ".input_activations";
  SLUICE_RETURN_IF_ERROR(fp8(a, an));
  const std::string as = a["strategy"].get<std::string>();
  const bool dynamic = Is(a, "dynamic", true);
  if (dynamic && as == "token") {
    s.inputs = Fp8Scheme::Inputs::kPerToken;
  } else if (dynamic && as == "group") {
    if (!a.contains("group_size") || !a["group_size"].is_number_integer() ||
        a["group_size"].get<int64_t>() <= 0 || a["group_size"].get<int64_t>() > 65536) {
      return f.Error(an + ".group_size", "must be a positive integer");
    }
    s.inputs = Fp8Scheme::Inputs::kPerTokenGroup;
    s.input_group = a["group_size"].get<int>();
  } else if (!dynamic && as == "tensor") {
    s.inputs = Fp8Scheme::Inputs::kStatic;
  } else {
    return f.Error(an, "must be dynamic per token or group, or static per tensor");
  }
  return absl::OkStatus();
}

// quant_method "compressed-tensors" with FP8 ("float-quantized"), as llm-compressor
// exports it: config groups over the Linear layers (attention and MLP may scale their
// weights differently, every group must quantize inputs alike).
absl::Status ParseCompressedTensors(const json& q, const Fields& f, Fp8Scheme& s) {
  if (!f.Has("format") || !q["format"].is_string() ||
      (q["format"] != "float-quantized" && q["format"] != "naive-quantized")) {
    return f.Error("format",
                   "must be \"float-quantized\" (FP8); other compressed-tensors "
                   "formats are not supported");
  }
  if (!f.Has("config_groups") || !q["config_groups"].is_object() || q["config_groups"].empty()) {
    return f.Error("config_groups", "must hold at least one group");
  }
  bool first = true;
  for (const auto& [name, g] : q["config_groups"].items()) {
    Fp8Scheme one;
    SLUICE_RETURN_IF_ERROR(ParseConfigGroup(g, "config_groups." + name, f, one));
    if (!first && (one.inputs != s.inputs || one.input_group != s.input_group)) {
      return f.Error("config_groups", "must quantize the inputs of every group alike");
    }
    if (first || one.weights == Fp8Scheme::Weights::kBlock) s = one;
    first = false;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseQuantization(const json& j, const std::string& source, ModelConfig& c) {
  if (!j.contains("quantization_config") || j["quantization_config"].is_null()) {
    return absl::OkStatus();
  }
  const json& q = j["quantization_config"];
  const std::string where = absl::StrCat(source, " (quantization_config)");
  Fields f(q, where);
  if (!q.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field \"quantization_config\" must be an object"));
  }
  if (!f.Has("quant_method") || !q["quant_method"].is_string()) {
    return f.Error("quant_method", "is missing or not a string");
  }
  const std::string method = q["quant_method"].get<std::string>();
  if (method == "mxfp4" && c.model_type == "gpt_oss") return absl::OkStatus();
  Fp8Scheme& s = c.fp8;
  if (method == "fp8") {
    SLUICE_RETURN_IF_ERROR(ParseFp8Layout(q, f, s));
  } else if (method == "compressed-tensors") {
    SLUICE_RETURN_IF_ERROR(ParseCompressedTensors(q, f, s));
  } else {
    return f.Error("quant_method", absl::StrCat("is \"", method,
                                                "\"; supported: fp8, compressed-tensors (FP8), "
                                                "mxfp4 (gpt_oss)"));
  }
  s.enabled = true;
  s.layout = method;
  if (c.num_experts > 0) {
    return f.Error("quant_method",
                   "is FP8 on a mixture of experts; FP8 experts are not "
                   "supported yet");
  }
  return absl::OkStatus();
}

}  // namespace config_internal

namespace {

// A scale tensor: 16- or 32-bit floats, finite and >= 0, of one of `shapes`.
absl::StatusOr<std::vector<float>> Scales(const Checkpoint& ckpt, const std::string& name,
                                          const std::vector<std::vector<int64_t>>& shapes,
                                          const std::string& shape_text) {
  SLUICE_ASSIGN_OR_RETURN(const TensorView* t, ckpt.Get(name));
  if (std::find(shapes.begin(), shapes.end(), t->shape) == shapes.end()) {
    return absl::InvalidArgumentError(absl::StrCat(t->file, ": tensor ", name, " has shape [",
                                                   absl::StrJoin(t->shape, ", "),
                                                   "] but should be ", shape_text));
  }
  if (t->dtype == DType::kU8 || t->dtype == DType::kF8E4M3) {
    return absl::InvalidArgumentError(absl::StrCat(
        t->file, ": tensor ", name, " is ", DTypeName(t->dtype), "; scales are BF16, F16 or F32"));
  }
  std::vector<float> v = t->ToFloat();
  for (float x : v) {
    if (!std::isfinite(x) || x < 0.0f) {
      return absl::InvalidArgumentError(
          absl::StrCat(t->file, ": tensor ", name, " holds ", x, "; scales are finite and >= 0"));
    }
  }
  return v;
}

// One scale for a tensor: [], [1] or [1, 1].
const std::vector<std::vector<int64_t>> kOneScale = {{}, {1}, {1, 1}};

// The FP8 weight times its scales (see ReadFp8Linear).
absl::StatusOr<std::vector<float>> DequantizeFp8Linear(const Checkpoint& ckpt,
                                                       const Fp8Scheme& scheme,
                                                       const TensorView& weight,
                                                       const std::string& base) {
  const int64_t out = weight.shape[0], in = weight.shape[1];
  std::vector<float> w = weight.ToFloat();
  if (scheme.weights == Fp8Scheme::Weights::kBlock) {
    const int64_t bn = scheme.block_n, bk = scheme.block_k;
    const int64_t rows = (out + bn - 1) / bn, cols = (in + bk - 1) / bk;
    SLUICE_ASSIGN_OR_RETURN(
        std::vector<float> s,
        Scales(ckpt, base + "weight_scale_inv", {{rows, cols}},
               absl::StrCat("[", rows, ", ", cols, "] (blocks of ", bn, " x ", bk, ")")));
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t k = 0; k < in; ++k) w[o * in + k] *= s[(o / bn) * cols + k / bk];
    }
    return w;
  }
  const std::string name = base + "weight_scale";
  SLUICE_ASSIGN_OR_RETURN(const TensorView* st, ckpt.Get(name));
  const bool per_tensor = st->NumElements() == 1;
  std::vector<std::vector<int64_t>> shapes = kOneScale;
  if (!per_tensor) shapes = {{out, 1}, {out}};
  SLUICE_ASSIGN_OR_RETURN(std::vector<float> s, Scales(ckpt, name, shapes,
                                                       absl::StrCat("[] or [1] (per tensor) or [",
                                                                    out, ", 1] (per channel)")));
  for (int64_t o = 0; o < out; ++o) {
    const float so = s[per_tensor ? 0 : o];
    for (int64_t k = 0; k < in; ++k) w[o * in + k] *= so;
  }
  return w;
}

// How the layer quantizes its input under `scheme` (static: its `input_scale`).
absl::StatusOr<InputQuant> Fp8LinearInput(const Checkpoint& ckpt, const Fp8Scheme& scheme,
                                          const std::string& base) {
  InputQuant q;
  switch (scheme.inputs) {
    case Fp8Scheme::Inputs::kNone:
      return q;
    case Fp8Scheme::Inputs::kPerToken:
      q.mode = InputQuant::Mode::kPerToken;
      return q;
    case Fp8Scheme::Inputs::kPerTokenGroup:
      q.mode = InputQuant::Mode::kPerTokenGroup;
      q.group = scheme.input_group;
      return q;
    case Fp8Scheme::Inputs::kStatic: {
      SLUICE_ASSIGN_OR_RETURN(std::vector<float> s, Scales(ckpt, base + "input_scale", kOneScale,
                                                           "[] or [1] (per tensor)"));
      if (s[0] <= 0.0f) {
        return absl::InvalidArgumentError(absl::StrCat(base, "input_scale is 0"));
      }
      q.mode = InputQuant::Mode::kStatic;
      q.scale = s[0];
      return q;
    }
  }
  return q;
}

}  // namespace

absl::StatusOr<Fp8Linear> ReadFp8Linear(const Checkpoint& ckpt, const Fp8Scheme& scheme,
                                        const TensorView& weight, const std::string& base) {
  Fp8Linear l;
  if (weight.dtype != DType::kF8E4M3) {
    l.weight = weight.ToFloat();
    if (scheme.on_load) {
      QuantizeRowsFp8(l.weight, weight.shape[1]);
      l.input.mode = InputQuant::Mode::kPerToken;
    }
    return l;
  }
  if (!scheme.enabled || scheme.on_load) {
    return absl::InvalidArgumentError(
        absl::StrCat(weight.file, ": tensor ", weight.name,
                     " is F8_E4M3 but config.json has no FP8 quantization_config to scale it"));
  }
  SLUICE_ASSIGN_OR_RETURN(l.weight, DequantizeFp8Linear(ckpt, scheme, weight, base));
  SLUICE_ASSIGN_OR_RETURN(l.input, Fp8LinearInput(ckpt, scheme, base));
  return l;
}

void QuantizeRowsFp8(std::vector<float>& w, int64_t cols) {
  const int64_t rows = static_cast<int64_t>(w.size()) / cols;
  // A row of zeros keeps scale 1; the shape is valid, so the kernel cannot fail.
  (void)kernels::cpu::QuantizeDequantizeFp8(w.data(), w.data(), rows, cols, 0, 0.0f);
}

}  // namespace sluice
