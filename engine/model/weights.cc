#include "engine/model/weights.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/model/fp8.h"
#include "engine/model/mxfp4.h"
#include "sluice/kernels/random.h"

namespace sluice {
namespace {

// The input a fused layer's parts share (q, k, v; gate, up): they must quantize it alike.
struct SharedInput {
  std::string first;  // the first part's name, for errors
  InputQuant quant;
};

class Reader {
 public:
  Reader(const Checkpoint& ckpt, const ModelConfig& config, const WeightSink& sink)
      : ckpt_(ckpt), fp8_(config.fp8), sink_(sink) {}

  // Sends tensor `name`, which must have exactly `shape`, to (layer, slot).
  absl::Status Send(const std::string& name, const std::vector<int64_t>& shape, int layer,
                    WeightSlot slot) {
    SLUICE_ASSIGN_OR_RETURN(const TensorView* t, Shaped(name, shape));
    SLUICE_RETURN_IF_ERROR(NotFp8(*t));
    return sink_(layer, slot, t->ToFloat());
  }

  // Sends the weight `base + "weight"` of a linear layer as ReadFp8Linear reads it, and
  // folds how that layer quantizes its input into `input`, which the other parts of a
  // fused layer share.
  absl::Status SendLinear(const std::string& base, const std::vector<int64_t>& shape, int layer,
                          WeightSlot slot, SharedInput& input) {
    SLUICE_ASSIGN_OR_RETURN(const TensorView* t, Shaped(base + "weight", shape));
    SLUICE_ASSIGN_OR_RETURN(Fp8Linear l, ReadFp8Linear(ckpt_, fp8_, *t, base));
    const InputQuant& q = l.input;
    if (input.first.empty()) {
      input.first = base;
      input.quant = q;
    } else if (input.quant.mode != q.mode || input.quant.group != q.group) {
      return absl::InvalidArgumentError(absl::StrCat(input.first, "weight and ", base,
                                                     "weight share their input but quantize it "
                                                     "differently (one FP8, one not?)"));
    } else {
      input.quant.scale = std::max(input.quant.scale, q.scale);
    }
    return sink_(layer, slot, std::move(l.weight));
  }

  bool Has(const std::string& name) const { return ckpt_.Has(name); }

  // Tensor `name` as stored: it must have `shape` and `dtype`.
  absl::StatusOr<const TensorView*> Raw(const std::string& name, const std::vector<int64_t>& shape,
                                        DType dtype) const {
    SLUICE_ASSIGN_OR_RETURN(const TensorView* t, Shaped(name, shape));
    if (t->dtype != dtype) {
      return absl::InvalidArgumentError(absl::StrCat(t->file, ": tensor ", name, " is ",
                                                     DTypeName(t->dtype), " but should be ",
                                                     DTypeName(dtype)));
    }
    return t;
  }
  absl::Status SendValues(int layer, WeightSlot slot, std::vector<float>&& values) {
    return sink_(layer, slot, std::move(values));
  }

  // As Send, with the values rearranged by `fn` first.
  absl::Status SendAs(const std::string& name, const std::vector<int64_t>& shape, int layer,
                      WeightSlot slot,
                      const std::function<std::vector<float>(const std::vector<float>&)>& fn) {
    SLUICE_ASSIGN_OR_RETURN(const TensorView* t, Shaped(name, shape));
    SLUICE_RETURN_IF_ERROR(NotFp8(*t));
    return sink_(layer, slot, fn(t->ToFloat()));
  }

 private:
  // FP8 codes mean nothing without their scales, which only linear layers have.
  static absl::Status NotFp8(const TensorView& t) {
    if (t.dtype != DType::kF8E4M3) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(
        t.file, ": tensor ", t.name, " is F8_E4M3; only linear layers' weights may be FP8"));
  }

  // Tensor `name`, or the error naming it and its file when its shape is not `shape`.
  absl::StatusOr<const TensorView*> Shaped(const std::string& name,
                                           const std::vector<int64_t>& shape) const {
    auto t = ckpt_.Get(name);
    if (!t.ok()) return t.status();
    if ((*t)->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          (*t)->file, ": tensor ", name, " has shape [", absl::StrJoin((*t)->shape, ", "),
          "] but the config implies [", absl::StrJoin(shape, ", "), "]"));
    }
    return *t;
  }

  const Checkpoint& ckpt_;
  const Fp8Scheme& fp8_;
  const WeightSink& sink_;
};

// gpt-oss keeps its experts fused, as x @ W: gate_up_proj [experts, hidden, 2 * inter] with
// gate and up interleaved column by column, down_proj [experts, inter, hidden]. They are
// rearranged into the slots' row-major [out, in] layout, gate rows before up rows.
absl::Status ReadGptOssExperts(Reader& r, const ModelConfig& c, int i, const std::string& p) {
  using S = WeightSlot;
  const int64_t e = c.num_experts, h = c.hidden_size, mi = c.moe_intermediate_size;
  SLUICE_RETURN_IF_ERROR(r.Send(p + "mlp.router.weight", {e, h}, i, S::kRouter));
  SLUICE_RETURN_IF_ERROR(r.Send(p + "mlp.router.bias", {e}, i, S::kRouterBias));
  // Output o of an expert: gate row o < mi is column 2o, up row mi + o' is column 2o' + 1.
  auto column_of = [mi](int64_t o) { return o < mi ? 2 * o : 2 * (o - mi) + 1; };
  if (r.Has(p + "mlp.experts.gate_up_proj_blocks")) {
    // MXFP4, as published: [experts, out, in / 32, 16] blocks with [experts, out, in / 32]
    // scales, rows already output features (gate and up still interleaved).
    const std::string g = p + "mlp.experts.gate_up_proj", d = p + "mlp.experts.down_proj";
    if (h % 32 != 0 || mi % 32 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          g, "_blocks: MXFP4 needs hidden_size and intermediate_size divisible by 32"));
    }
    SLUICE_ASSIGN_OR_RETURN(const TensorView* gb,
                            r.Raw(g + "_blocks", {e, 2 * mi, h / 32, 16}, DType::kU8));
    SLUICE_ASSIGN_OR_RETURN(const TensorView* gs,
                            r.Raw(g + "_scales", {e, 2 * mi, h / 32}, DType::kU8));
    const std::vector<float> rows = DequantizeMxfp4(gb->data, gs->data, e * 2 * mi, h);
    std::vector<float> gate_up(rows.size());
    for (int64_t x = 0; x < e; ++x) {
      for (int64_t o = 0; o < 2 * mi; ++o) {
        std::copy_n(rows.begin() + (x * 2 * mi + column_of(o)) * h, h,
                    gate_up.begin() + (x * 2 * mi + o) * h);
      }
    }
    SLUICE_RETURN_IF_ERROR(r.SendValues(i, S::kExpertGateUp, std::move(gate_up)));
    SLUICE_ASSIGN_OR_RETURN(const TensorView* db,
                            r.Raw(d + "_blocks", {e, h, mi / 32, 16}, DType::kU8));
    SLUICE_ASSIGN_OR_RETURN(const TensorView* ds,
                            r.Raw(d + "_scales", {e, h, mi / 32}, DType::kU8));
    SLUICE_RETURN_IF_ERROR(
        r.SendValues(i, S::kExpertDown, DequantizeMxfp4(db->data, ds->data, e * h, mi)));
  } else {
    SLUICE_RETURN_IF_ERROR(
        r.SendAs(p + "mlp.experts.gate_up_proj", {e, h, 2 * mi}, i, S::kExpertGateUp,
                 [&](const std::vector<float>& w) {
                   std::vector<float> out(w.size());
                   for (int64_t x = 0; x < e; ++x) {
                     for (int64_t o = 0; o < 2 * mi; ++o) {
                       for (int64_t k = 0; k < h; ++k) {
                         out[static_cast<size_t>((x * 2 * mi + o) * h + k)] =
                             w[static_cast<size_t>((x * h + k) * 2 * mi + column_of(o))];
                       }
                     }
                   }
                   return out;
                 }));
    SLUICE_RETURN_IF_ERROR(r.SendAs(p + "mlp.experts.down_proj", {e, mi, h}, i, S::kExpertDown,
                                    [&](const std::vector<float>& w) {
                                      std::vector<float> out(w.size());
                                      for (int64_t x = 0; x < e; ++x) {
                                        for (int64_t o = 0; o < h; ++o) {
                                          for (int64_t k = 0; k < mi; ++k) {
                                            out[static_cast<size_t>((x * h + o) * mi + k)] =
                                                w[static_cast<size_t>((x * mi + k) * h + o)];
                                          }
                                        }
                                      }
                                      return out;
                                    }));
  }
  SLUICE_RETURN_IF_ERROR(r.SendAs(p + "mlp.experts.gate_up_proj_bias", {e, 2 * mi}, i,
                                  S::kExpertGateUpBias, [&](const std::vector<float>& b) {
                                    std::vector<float> out(b.size());
                                    for (int64_t x = 0; x < e; ++x) {
                                      for (int64_t o = 0; o < 2 * mi; ++o) {
                                        out[static_cast<size_t>(x * 2 * mi + o)] =
                                            b[static_cast<size_t>(x * 2 * mi + column_of(o))];
                                      }
                                    }
                                    return out;
                                  }));
  return r.Send(p + "mlp.experts.down_proj_bias", {e, h}, i, S::kExpertDownBias);
}

absl::Status ReadLayer(Reader& r, const ModelConfig& c, int i, LayerQuant& quant) {
  const std::string p = absl::StrCat("model.layers.", i, ".");
  const int64_t h = c.hidden_size, q = int64_t{c.num_q_heads} * c.head_dim,
                kv = int64_t{c.num_kv_heads} * c.head_dim, inter = c.intermediate_size;
  using S = WeightSlot;
  SLUICE_RETURN_IF_ERROR(r.Send(p + "input_layernorm.weight", {h}, i, S::kInputNorm));
  SharedInput qkv, o_proj, gate_up, down;
  SLUICE_RETURN_IF_ERROR(r.SendLinear(p + "self_attn.q_proj.", {q, h}, i, S::kQkv, qkv));
  SLUICE_RETURN_IF_ERROR(r.SendLinear(p + "self_attn.k_proj.", {kv, h}, i, S::kQkv, qkv));
  SLUICE_RETURN_IF_ERROR(r.SendLinear(p + "self_attn.v_proj.", {kv, h}, i, S::kQkv, qkv));
  quant.qkv = qkv.quant;
  if (c.attention_bias) {
    SLUICE_RETURN_IF_ERROR(r.Send(p + "self_attn.q_proj.bias", {q}, i, S::kQkvBias));
    SLUICE_RETURN_IF_ERROR(r.Send(p + "self_attn.k_proj.bias", {kv}, i, S::kQkvBias));
    SLUICE_RETURN_IF_ERROR(r.Send(p + "self_attn.v_proj.bias", {kv}, i, S::kQkvBias));
  }
  if (c.qk_norm) {
    SLUICE_RETURN_IF_ERROR(r.Send(p + "self_attn.q_norm.weight", {c.head_dim}, i, S::kQNorm));
    SLUICE_RETURN_IF_ERROR(r.Send(p + "self_attn.k_norm.weight", {c.head_dim}, i, S::kKNorm));
  }
  SLUICE_RETURN_IF_ERROR(r.SendLinear(p + "self_attn.o_proj.", {h, q}, i, S::kOProj, o_proj));
  quant.o_proj = o_proj.quant;
  if (c.o_proj_bias) {
    SLUICE_RETURN_IF_ERROR(r.Send(p + "self_attn.o_proj.bias", {h}, i, S::kOProjBias));
  }
  if (c.attention_sinks) {
    SLUICE_RETURN_IF_ERROR(r.Send(p + "self_attn.sinks", {c.num_q_heads}, i, S::kSinks));
  }
  SLUICE_RETURN_IF_ERROR(r.Send(p + "post_attention_layernorm.weight", {h}, i, S::kPostNorm));
  if (c.gpt_oss_moe) return ReadGptOssExperts(r, c, i, p);
  if (c.IsMoeLayer(i)) {
    const int64_t e = c.num_experts, mi = c.moe_intermediate_size;
    // Mixtral names them w1 (gate), w3 (up) and w2 (down) under block_sparse_moe.
    const bool mixtral = c.model_type == "mixtral";
    const std::string moe = p + (mixtral ? "block_sparse_moe." : "mlp.");
    SLUICE_RETURN_IF_ERROR(r.Send(moe + "gate.weight", {e, h}, i, S::kRouter));
    for (int64_t x = 0; x < e; ++x) {
      const std::string ex = absl::StrCat(moe, "experts.", x, ".");
      SLUICE_RETURN_IF_ERROR(
          r.Send(ex + (mixtral ? "w1" : "gate_proj") + ".weight", {mi, h}, i, S::kExpertGateUp));
      SLUICE_RETURN_IF_ERROR(
          r.Send(ex + (mixtral ? "w3" : "up_proj") + ".weight", {mi, h}, i, S::kExpertGateUp));
    }
    for (int64_t x = 0; x < e; ++x) {
      const std::string ex = absl::StrCat(moe, "experts.", x, ".");
      SLUICE_RETURN_IF_ERROR(
          r.Send(ex + (mixtral ? "w2" : "down_proj") + ".weight", {h, mi}, i, S::kExpertDown));
    }
    return absl::OkStatus();
  }
  SLUICE_RETURN_IF_ERROR(r.SendLinear(p + "mlp.gate_proj.", {inter, h}, i, S::kGateUp, gate_up));
  SLUICE_RETURN_IF_ERROR(r.SendLinear(p + "mlp.up_proj.", {inter, h}, i, S::kGateUp, gate_up));
  SLUICE_RETURN_IF_ERROR(r.SendLinear(p + "mlp.down_proj.", {h, inter}, i, S::kDownProj, down));
  quant.gate_up = gate_up.quant;
  quant.down = down.quant;
  return absl::OkStatus();
}

}  // namespace

int64_t SlotElements(const ModelConfig& c, WeightSlot slot) {
  const int64_t h = c.hidden_size, q = int64_t{c.num_q_heads} * c.head_dim,
                kv = int64_t{c.num_kv_heads} * c.head_dim, inter = c.intermediate_size;
  switch (slot) {
    case WeightSlot::kEmbed:
    case WeightSlot::kLmHead:
      return int64_t{c.vocab_size} * h;
    case WeightSlot::kInputNorm:
    case WeightSlot::kPostNorm:
    case WeightSlot::kFinalNorm:
      return h;
    case WeightSlot::kQkv:
      return (q + 2 * kv) * h;
    case WeightSlot::kQkvBias:
      return q + 2 * kv;
    case WeightSlot::kOProj:
      return h * q;
    case WeightSlot::kGateUp:
      return 2 * inter * h;
    case WeightSlot::kDownProj:
      return h * inter;
    case WeightSlot::kQNorm:
    case WeightSlot::kKNorm:
      return c.head_dim;
    case WeightSlot::kRouter:
      return int64_t{c.num_experts} * h;
    case WeightSlot::kExpertGateUp:
    case WeightSlot::kExpertDown:
      return int64_t{c.num_experts} * (slot == WeightSlot::kExpertGateUp ? 2 : 1) *
             c.moe_intermediate_size * h;
    case WeightSlot::kOProjBias:
      return h;
    case WeightSlot::kSinks:
      return c.num_q_heads;
    case WeightSlot::kRouterBias:
      return c.num_experts;
    case WeightSlot::kExpertGateUpBias:
      return int64_t{c.num_experts} * 2 * c.moe_intermediate_size;
    case WeightSlot::kExpertDownBias:
      return int64_t{c.num_experts} * h;
  }
  return 0;
}

bool HasSlot(const ModelConfig& c, WeightSlot slot) {
  if (slot == WeightSlot::kQkvBias) return c.attention_bias;
  if (slot == WeightSlot::kLmHead) return !c.tie_word_embeddings;
  if (slot == WeightSlot::kQNorm || slot == WeightSlot::kKNorm) return c.qk_norm;
  if (slot == WeightSlot::kRouter || slot == WeightSlot::kExpertGateUp ||
      slot == WeightSlot::kExpertDown) {
    return c.num_experts > 0;
  }
  if (slot == WeightSlot::kOProjBias) return c.o_proj_bias;
  if (slot == WeightSlot::kSinks) return c.attention_sinks;
  if (slot == WeightSlot::kRouterBias || slot == WeightSlot::kExpertGateUpBias ||
      slot == WeightSlot::kExpertDownBias) {
    return c.gpt_oss_moe;
  }
  return true;
}

bool HasLayerSlot(const ModelConfig& c, int layer, WeightSlot slot) {
  if (!HasSlot(c, slot)) return false;
  const bool moe = c.IsMoeLayer(layer);
  if (slot == WeightSlot::kGateUp || slot == WeightSlot::kDownProj) return !moe;
  if (slot == WeightSlot::kRouter || slot == WeightSlot::kRouterBias || IsExpertSlot(slot)) {
    return moe;
  }
  return true;
}

bool IsLayerSlot(WeightSlot slot) {
  return slot != WeightSlot::kEmbed && slot != WeightSlot::kFinalNorm &&
         slot != WeightSlot::kLmHead;
}

bool IsExpertSlot(WeightSlot slot) {
  return slot == WeightSlot::kExpertGateUp || slot == WeightSlot::kExpertDown ||
         slot == WeightSlot::kExpertGateUpBias || slot == WeightSlot::kExpertDownBias;
}

void ForEachWeight(const ModelConfig& c,
                   const std::function<void(int layer, WeightSlot slot)>& fn) {
  for (int s = 0; s < kNumWeightSlots; ++s) {
    const auto slot = static_cast<WeightSlot>(s);
    if (!HasSlot(c, slot)) continue;
    if (!IsLayerSlot(slot)) {
      fn(-1, slot);
      continue;
    }
    for (int layer = 0; layer < c.num_layers; ++layer) {
      if (HasLayerSlot(c, layer, slot)) fn(layer, slot);
    }
  }
}

RandomRange RandomRangeOf(const ModelConfig& c, WeightSlot slot) {
  // U(-a, a) has variance a² / 3: a = sqrt(3 / fan_in) gives 1 / fan_in.
  auto matrix = [](int64_t fan_in) {
    const float a = std::sqrt(3.0f / static_cast<float>(fan_in));
    return RandomRange{-a, a};
  };
  switch (slot) {
    case WeightSlot::kEmbed:
      return {-1.0f, 1.0f};
    case WeightSlot::kInputNorm:
    case WeightSlot::kPostNorm:
    case WeightSlot::kFinalNorm:
    case WeightSlot::kQNorm:
    case WeightSlot::kKNorm:
      return {0.9f, 1.1f};
    case WeightSlot::kQkvBias:
    case WeightSlot::kOProjBias:
    case WeightSlot::kRouterBias:
    case WeightSlot::kExpertGateUpBias:
    case WeightSlot::kExpertDownBias:
      return {-0.1f, 0.1f};
    case WeightSlot::kSinks:
      return {-1.0f, 1.0f};
    case WeightSlot::kQkv:
    case WeightSlot::kGateUp:
    case WeightSlot::kLmHead:
      return matrix(c.hidden_size);
    case WeightSlot::kOProj:
      return matrix(int64_t{c.num_q_heads} * c.head_dim);
    case WeightSlot::kDownProj:
      return matrix(c.intermediate_size);
    case WeightSlot::kRouter:
    case WeightSlot::kExpertGateUp:
      return matrix(c.hidden_size);
    case WeightSlot::kExpertDown:
      return matrix(c.moe_intermediate_size);
  }
  return {0.0f, 0.0f};
}

uint64_t RandomStream(int layer, WeightSlot slot) {
  return (static_cast<uint64_t>(layer + 1) << 8) | static_cast<uint64_t>(slot);
}

std::vector<float>& ModelWeights::Slot(int layer, WeightSlot slot) {
  switch (slot) {
    case WeightSlot::kEmbed:
      return embed;
    case WeightSlot::kFinalNorm:
      return final_norm;
    case WeightSlot::kLmHead:
      return lm_head;
    case WeightSlot::kInputNorm:
      return layers[layer].input_norm;
    case WeightSlot::kQkv:
      return layers[layer].qkv;
    case WeightSlot::kQkvBias:
      return layers[layer].qkv_bias;
    case WeightSlot::kOProj:
      return layers[layer].o_proj;
    case WeightSlot::kPostNorm:
      return layers[layer].post_norm;
    case WeightSlot::kGateUp:
      return layers[layer].gate_up;
    case WeightSlot::kDownProj:
      return layers[layer].down_proj;
    case WeightSlot::kQNorm:
      return layers[layer].q_norm;
    case WeightSlot::kKNorm:
      return layers[layer].k_norm;
    case WeightSlot::kRouter:
      return layers[layer].router;
    case WeightSlot::kExpertGateUp:
      return layers[layer].expert_gate_up;
    case WeightSlot::kExpertDown:
      return layers[layer].expert_down;
    case WeightSlot::kOProjBias:
      return layers[layer].o_bias;
    case WeightSlot::kSinks:
      return layers[layer].sinks;
    case WeightSlot::kRouterBias:
      return layers[layer].router_bias;
    case WeightSlot::kExpertGateUpBias:
      return layers[layer].expert_gate_up_bias;
    case WeightSlot::kExpertDownBias:
      return layers[layer].expert_down_bias;
  }
  return embed;
}

absl::Status ReadWeights(const Checkpoint& ckpt, const ModelConfig& c, const WeightSink& sink,
                         const LoadProgress& progress, std::vector<LayerQuant>* quant) {
  if (c.fp8.enabled && quant == nullptr) {
    return absl::UnimplementedError(
        absl::StrCat("FP8 weights (", c.fp8.layout,
                     "): this backend does not compute W8A8 yet; the CPU "
                     "backend (--device cpu) does"));
  }
  Reader r(ckpt, c, sink);
  const int64_t h = c.hidden_size, v = c.vocab_size;
  SLUICE_RETURN_IF_ERROR(r.Send("model.embed_tokens.weight", {v, h}, -1, WeightSlot::kEmbed));
  std::vector<LayerQuant> layers(static_cast<size_t>(c.num_layers));
  for (int i = 0; i < c.num_layers; ++i) {
    SLUICE_RETURN_IF_ERROR(ReadLayer(r, c, i, layers[static_cast<size_t>(i)]));
    if (progress) progress(i + 1, c.num_layers);
  }
  if (quant != nullptr) *quant = std::move(layers);
  SLUICE_RETURN_IF_ERROR(r.Send("model.norm.weight", {h}, -1, WeightSlot::kFinalNorm));
  if (!c.tie_word_embeddings) {
    SLUICE_RETURN_IF_ERROR(r.Send("lm_head.weight", {v, h}, -1, WeightSlot::kLmHead));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelWeights> LoadWeights(const Checkpoint& ckpt, const ModelConfig& c,
                                         const LoadProgress& progress) {
  ModelWeights w;
  w.layers.resize(c.num_layers);
  std::vector<LayerQuant> quant;
  SLUICE_RETURN_IF_ERROR(ReadWeights(
      ckpt, c,
      [&](int layer, WeightSlot slot, std::vector<float>&& values) {
        std::vector<float>& out = w.Slot(layer, slot);
        if (out.empty()) {
          out = std::move(values);
        } else {
          out.insert(out.end(), values.begin(), values.end());
        }
        return absl::OkStatus();
      },
      progress, &quant));
  for (size_t i = 0; i < quant.size(); ++i) w.layers[i].quant = quant[i];
  return w;
}

absl::StatusOr<ModelWeights> RandomWeights(const ModelConfig& c, uint64_t seed) {
  ModelWeights w;
  w.layers.resize(c.num_layers);
  kernels::Status k;
  ForEachWeight(c, [&](int layer, WeightSlot slot) {
    if (!k.ok()) return;
    const RandomRange range = RandomRangeOf(c, slot);
    std::vector<float>& out = w.Slot(layer, slot);
    out.resize(SlotElements(c, slot));
    k = kernels::cpu::FillUniform(out.data(), static_cast<int64_t>(out.size()), seed,
                                  RandomStream(layer, slot), 0, range.lo, range.hi);
    // The values a bf16 backend holds, so that every backend runs the same model.
    for (float& x : out) x = kernels::Bf16ToFloat(kernels::FloatToBf16(x));
  });
  if (!k.ok()) return absl::InternalError(k.message());
  if (c.fp8.on_load) {  // as a checkpoint's weights would be (see Reader::SendLinear)
    for (LayerWeights& l : w.layers) {
      QuantizeRowsFp8(l.qkv, c.hidden_size);
      QuantizeRowsFp8(l.o_proj, int64_t{c.num_q_heads} * c.head_dim);
      QuantizeRowsFp8(l.gate_up, c.hidden_size);
      QuantizeRowsFp8(l.down_proj, c.intermediate_size);
      l.quant.qkv.mode = l.quant.o_proj.mode = l.quant.gate_up.mode = l.quant.down.mode =
          InputQuant::Mode::kPerToken;
    }
  }
  return w;
}

}  // namespace sluice
