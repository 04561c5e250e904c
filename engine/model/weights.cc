#include "engine/model/weights.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status_macros.h"

namespace sluice {
namespace {

class Reader {
 public:
  explicit Reader(const Checkpoint& ckpt) : ckpt_(ckpt) {}

  // Appends tensor `name`, which must have exactly `shape`, to `out`.
  absl::Status Append(const std::string& name, const std::vector<int64_t>& shape,
                      std::vector<float>& out) {
    auto t = ckpt_.Get(name);
    if (!t.ok()) return t.status();
    if ((*t)->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          (*t)->file, ": tensor ", name, " has shape [", absl::StrJoin((*t)->shape, ", "),
          "] but the config implies [", absl::StrJoin(shape, ", "), "]"));
    }
    std::vector<float> values = (*t)->ToFloat();
    out.insert(out.end(), values.begin(), values.end());
    return absl::OkStatus();
  }

 private:
  const Checkpoint& ckpt_;
};

absl::Status LoadLayer(Reader& r, const ModelConfig& c, int i, LayerWeights& l) {
  const std::string p = absl::StrCat("model.layers.", i, ".");
  const int64_t h = c.hidden_size, q = int64_t{c.num_q_heads} * c.head_dim,
                kv = int64_t{c.num_kv_heads} * c.head_dim, inter = c.intermediate_size;
  SLUICE_RETURN_IF_ERROR(r.Append(p + "input_layernorm.weight", {h}, l.input_norm));
  SLUICE_RETURN_IF_ERROR(r.Append(p + "self_attn.q_proj.weight", {q, h}, l.qkv));
  SLUICE_RETURN_IF_ERROR(r.Append(p + "self_attn.k_proj.weight", {kv, h}, l.qkv));
  SLUICE_RETURN_IF_ERROR(r.Append(p + "self_attn.v_proj.weight", {kv, h}, l.qkv));
  if (c.attention_bias) {
    SLUICE_RETURN_IF_ERROR(r.Append(p + "self_attn.q_proj.bias", {q}, l.qkv_bias));
    SLUICE_RETURN_IF_ERROR(r.Append(p + "self_attn.k_proj.bias", {kv}, l.qkv_bias));
    SLUICE_RETURN_IF_ERROR(r.Append(p + "self_attn.v_proj.bias", {kv}, l.qkv_bias));
  }
  SLUICE_RETURN_IF_ERROR(r.Append(p + "self_attn.o_proj.weight", {h, q}, l.o_proj));
  SLUICE_RETURN_IF_ERROR(r.Append(p + "post_attention_layernorm.weight", {h}, l.post_norm));
  SLUICE_RETURN_IF_ERROR(r.Append(p + "mlp.gate_proj.weight", {inter, h}, l.gate_up));
  SLUICE_RETURN_IF_ERROR(r.Append(p + "mlp.up_proj.weight", {inter, h}, l.gate_up));
  SLUICE_RETURN_IF_ERROR(r.Append(p + "mlp.down_proj.weight", {h, inter}, l.down_proj));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelWeights> LoadWeights(const Checkpoint& ckpt, const ModelConfig& c,
                                         const LoadProgress& progress) {
  Reader r(ckpt);
  ModelWeights w;
  const int64_t h = c.hidden_size, v = c.vocab_size;
  SLUICE_RETURN_IF_ERROR(r.Append("model.embed_tokens.weight", {v, h}, w.embed));
  w.layers.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    SLUICE_RETURN_IF_ERROR(LoadLayer(r, c, i, w.layers[i]));
    if (progress) progress(i + 1, c.num_layers);
  }
  SLUICE_RETURN_IF_ERROR(r.Append("model.norm.weight", {h}, w.final_norm));
  if (!c.tie_word_embeddings) {
    SLUICE_RETURN_IF_ERROR(r.Append("lm_head.weight", {v, h}, w.lm_head));
  }
  return w;
}

}  // namespace sluice
