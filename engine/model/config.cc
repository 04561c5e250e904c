#include "engine/model/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/model/config_fields.h"
#include "nlohmann/json.hpp"

namespace sluice {
namespace {

using config_internal::Fields;
using nlohmann::json;

// RoPE from transformers-v5 `rope_parameters` or the older `rope_theta` + `rope_scaling`.
absl::Status ParseRope(const json& j, const std::string& source, ModelConfig& c) {
  json params = json::object();
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    params = j["rope_parameters"];
  } else {
    if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) params = j["rope_scaling"];
    if (j.contains("rope_theta")) params["rope_theta"] = j["rope_theta"];
  }
  const std::string where = absl::StrCat(source, " (rope)");
  Fields f(params, where);
  SLUICE_ASSIGN_OR_RETURN(c.rope.theta, f.PositiveFloat("rope_theta", 10000.0f));
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    if (params.contains(key) && params[key].is_string()) type = params[key].get<std::string>();
  }
  c.rope.rotary_dim = c.head_dim;
  if (type == "default") return absl::OkStatus();
  if (type == "yarn") {
    if (!f.Has("factor")) return f.Error("factor", "is missing (yarn rope)");
    SLUICE_ASSIGN_OR_RETURN(c.rope.yarn_factor, f.PositiveFloat("factor", 0.0f));
    SLUICE_ASSIGN_OR_RETURN(c.rope.yarn_beta_fast, f.PositiveFloat("beta_fast", 32.0f));
    SLUICE_ASSIGN_OR_RETURN(c.rope.yarn_beta_slow, f.PositiveFloat("beta_slow", 1.0f));
    SLUICE_ASSIGN_OR_RETURN(c.rope.yarn_original_max_position,
                            f.Int("original_max_position_embeddings", c.max_position_embeddings));
    SLUICE_ASSIGN_OR_RETURN(c.rope.yarn_truncate, f.Bool("truncate", true));
    if (f.Has("attention_factor")) {
      SLUICE_ASSIGN_OR_RETURN(c.rope.yarn_attention_factor,
                              f.PositiveFloat("attention_factor", 1.0f));
    } else if (f.Has("mscale") && f.Has("mscale_all_dim")) {
      SLUICE_ASSIGN_OR_RETURN(const float m, f.PositiveFloat("mscale", 1.0f));
      SLUICE_ASSIGN_OR_RETURN(const float all, f.PositiveFloat("mscale_all_dim", 1.0f));
      const float factor = c.rope.yarn_factor;
      auto get = [&](float s) { return factor > 1 ? 0.1f * s * std::log(factor) + 1.0f : 1.0f; };
      c.rope.yarn_attention_factor = get(m) / get(all);
    }
    return absl::OkStatus();
  }
  if (type != "llama3") {
    return absl::InvalidArgumentError(absl::StrCat(source, ": rope type \"", type,
                                                   "\" is not supported (default, llama3, yarn)"));
  }
  if (!f.Has("factor")) return f.Error("factor", "is missing (llama3 rope)");
  SLUICE_ASSIGN_OR_RETURN(c.rope.llama3_factor, f.PositiveFloat("factor", 0.0f));
  SLUICE_ASSIGN_OR_RETURN(c.rope.llama3_low_freq_factor, f.PositiveFloat("low_freq_factor", 1.0f));
  SLUICE_ASSIGN_OR_RETURN(c.rope.llama3_high_freq_factor,
                          f.PositiveFloat("high_freq_factor", 4.0f));
  SLUICE_ASSIGN_OR_RETURN(c.rope.llama3_original_max_position,
                          f.Int("original_max_position_embeddings", 8192));
  if (c.rope.llama3_factor <= 0.0f ||
      c.rope.llama3_high_freq_factor <= c.rope.llama3_low_freq_factor) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": llama3 rope needs factor > 0 and high_freq_factor > low_freq_factor"));
  }
  return absl::OkStatus();
}

// The experts of qwen3_moe and mixtral, and which layers have them.
absl::Status ParseMoe(const json& j, const Fields& f, ModelConfig& c) {
  const char* count = f.Has("num_experts") ? "num_experts" : "num_local_experts";
  if (!f.Has(count)) return f.Error("num_experts", "is missing (a mixture of experts)");
  SLUICE_ASSIGN_OR_RETURN(c.num_experts, f.Int(count));
  SLUICE_ASSIGN_OR_RETURN(c.num_experts_per_tok, f.Int("num_experts_per_tok", 2));
  if (c.num_experts_per_tok > c.num_experts) {
    return f.Error("num_experts_per_tok", "is larger than the number of experts");
  }
  if (f.Has("shared_expert_intermediate_size")) {
    return f.Error("shared_expert_intermediate_size", "is set; shared experts are not supported");
  }
  c.moe_layer.assign(static_cast<size_t>(c.num_layers), 1);
  if (c.model_type == "mixtral" || c.model_type == "gpt_oss") {
    // Every layer, experts of intermediate_size; Mixtral renormalizes its top-k.
    c.moe_intermediate_size = c.intermediate_size;
    c.norm_topk_prob = c.model_type == "mixtral";
    return absl::OkStatus();
  }
  SLUICE_ASSIGN_OR_RETURN(c.moe_intermediate_size, f.Int("moe_intermediate_size"));
  SLUICE_ASSIGN_OR_RETURN(c.norm_topk_prob, f.Bool("norm_topk_prob", false));
  SLUICE_ASSIGN_OR_RETURN(const int step, f.Int("decoder_sparse_step", 1));
  if (j.contains("mlp_only_layers") && !j["mlp_only_layers"].is_null()) {
    if (!j["mlp_only_layers"].is_array()) return f.Error("mlp_only_layers", "must be a list");
  }
  for (int layer = 0; layer < c.num_layers; ++layer) {
    c.moe_layer[static_cast<size_t>(layer)] = (layer + 1) % step == 0;
  }
  if (j.contains("mlp_only_layers") && j["mlp_only_layers"].is_array()) {
    for (const json& v : j["mlp_only_layers"]) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= c.num_layers) {
        return f.Error("mlp_only_layers", "must hold layer indices");
      }
      c.moe_layer[static_cast<size_t>(v.get<int64_t>())] = 0;
    }
  }
  return absl::OkStatus();
}

// gpt-oss: its experts' activation, the output projection's bias, sinks, and which layers
// attend through a sliding window.
absl::Status ParseGptOss(const json& j, const Fields& f, ModelConfig& c) {
  c.gpt_oss_moe = true;
  c.attention_sinks = true;
  c.o_proj_bias = c.attention_bias;
  SLUICE_ASSIGN_OR_RETURN(c.swiglu_alpha, f.PositiveFloat("swiglu_alpha", 1.702f));
  SLUICE_ASSIGN_OR_RETURN(c.swiglu_limit, f.PositiveFloat("swiglu_limit", 7.0f));
  int window = 0;
  if (f.Has("sliding_window")) {
    SLUICE_ASSIGN_OR_RETURN(window, f.Int("sliding_window"));
  }
  c.layer_window.assign(static_cast<size_t>(c.num_layers), 0);
  if (j.contains("layer_types") && !j["layer_types"].is_null()) {
    const json& types = j["layer_types"];
    if (!types.is_array() || types.size() != static_cast<size_t>(c.num_layers)) {
      return f.Error("layer_types", "must list one type per layer");
    }
    for (int i = 0; i < c.num_layers; ++i) {
      if (types[i] == "sliding_attention") {
        if (window <= 0) return f.Error("sliding_window", "is needed by sliding_attention layers");
        c.layer_window[static_cast<size_t>(i)] = window;
      } else if (types[i] != "full_attention") {
        return f.Error("layer_types", "holds a type other than sliding_attention, full_attention");
      }
    }
  } else if (window > 0) {  // transformers' default: sliding first, then alternating
    for (int i = 0; i < c.num_layers; i += 2) c.layer_window[static_cast<size_t>(i)] = window;
  }
  return absl::OkStatus();
}

// Token ids: one integer or a list, each a token of the vocabulary.
absl::StatusOr<std::vector<int32_t>> ParseIds(const json& v, const std::string& source,
                                              const std::string& field, int vocab_size) {
  std::vector<int32_t> ids;
  auto add = [&](const json& e) -> absl::Status {
    if (!e.is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": field \"", field, "\" must hold integers"));
    }
    const int64_t id = e.get<int64_t>();
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": field \"", field, "\" holds ", id,
                                                     ", outside the vocabulary (vocab_size ",
                                                     vocab_size, ")"));
    }
    ids.push_back(static_cast<int32_t>(id));
    return absl::OkStatus();
  };
  if (v.is_array()) {
    for (const json& e : v) {
      if (absl::Status s = add(e); !s.ok()) return s;
    }
  } else if (!v.is_null()) {
    if (!v.is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": field \"", field, "\" must be an integer or a list"));
    }
    if (absl::Status s = add(v); !s.ok()) return s;
  }
  return ids;
}

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string ModelConfig::Summary() const {
  return absl::StrFormat(
      "%s: %d layers, hidden %d, %d q / %d kv heads of %d, intermediate %d, vocab %d%s%s%s%s%s",
      model_type, num_layers, hidden_size, num_q_heads, num_kv_heads, head_dim, intermediate_size,
      vocab_size, tie_word_embeddings ? ", tied lm_head" : "", attention_bias ? ", qkv bias" : "",
      qk_norm ? ", qk norm" : "",
      num_experts > 0 ? absl::StrFormat(", %d experts of %d (top %d)", num_experts,
                                        moe_intermediate_size, num_experts_per_tok)
                      : std::string(),
      fp8.enabled ? absl::StrCat(", FP8 weights (", fp8.layout, ")") : std::string());
}

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& text, const std::string& source) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  Fields f(j, source);
  ModelConfig c;
  if (!j.contains("model_type") || !j["model_type"].is_string()) {
    return f.Error("model_type", "is missing or not a string");
  }
  c.model_type = j["model_type"].get<std::string>();
  static const char* const kTypes[] = {"llama",     "mistral", "qwen2",  "qwen3",
                                       "qwen3_moe", "mixtral", "gpt_oss"};
  if (std::find(std::begin(kTypes), std::end(kTypes), c.model_type) == std::end(kTypes)) {
    return f.Error("model_type", absl::StrCat("is \"", c.model_type,
                                              "\"; supported: llama, mistral, qwen2, qwen3, "
                                              "qwen3_moe, mixtral, gpt_oss"));
  }
  c.qk_norm = c.model_type == "qwen3" || c.model_type == "qwen3_moe";
  // Sliding windows are read by no layer yet: a model that uses them is refused.
  if (j.contains("use_sliding_window") && j["use_sliding_window"] == true) {
    return f.Error("use_sliding_window", "is true; sliding-window attention is not supported");
  }
  if (j.contains("hidden_act") && j["hidden_act"] != "silu") {
    return f.Error("hidden_act", "must be \"silu\"");
  }
  SLUICE_ASSIGN_OR_RETURN(c.vocab_size, f.Int("vocab_size"));
  SLUICE_ASSIGN_OR_RETURN(c.hidden_size, f.Int("hidden_size"));
  SLUICE_ASSIGN_OR_RETURN(c.intermediate_size, f.Int("intermediate_size"));
  SLUICE_ASSIGN_OR_RETURN(c.num_layers, f.Int("num_hidden_layers"));
  SLUICE_ASSIGN_OR_RETURN(c.num_q_heads, f.Int("num_attention_heads"));
  SLUICE_ASSIGN_OR_RETURN(c.num_kv_heads, f.Int("num_key_value_heads", c.num_q_heads));
  if (c.num_q_heads % c.num_kv_heads != 0) {
    return f.Error("num_key_value_heads", "must divide num_attention_heads");
  }
  if (c.hidden_size % c.num_q_heads != 0 && !f.Has("head_dim")) {
    return f.Error("head_dim", "is missing and hidden_size is not divisible by the head count");
  }
  SLUICE_ASSIGN_OR_RETURN(c.head_dim, f.Int("head_dim", c.hidden_size / c.num_q_heads));
  if (c.head_dim % 2 != 0) return f.Error("head_dim", "must be even (rotary pairs)");
  SLUICE_ASSIGN_OR_RETURN(c.max_position_embeddings, f.Int("max_position_embeddings", 4096));
  SLUICE_ASSIGN_OR_RETURN(c.rms_norm_eps, f.PositiveFloat("rms_norm_eps", 1e-6f));
  SLUICE_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  SLUICE_ASSIGN_OR_RETURN(c.attention_bias, f.Bool("attention_bias", c.model_type == "qwen2"));
  if (absl::Status s = ParseRope(j, source, c); !s.ok()) return s;
  if (c.model_type == "qwen3_moe" || c.model_type == "mixtral" || c.model_type == "gpt_oss") {
    if (absl::Status s = ParseMoe(j, f, c); !s.ok()) return s;
  }
  if (c.model_type == "gpt_oss") {
    if (absl::Status s = ParseGptOss(j, f, c); !s.ok()) return s;
  }
  if (absl::Status s = config_internal::ParseQuantization(j, source, c); !s.ok()) return s;
  if (j.contains("eos_token_id")) {
    SLUICE_ASSIGN_OR_RETURN(c.eos_token_ids,
                            ParseIds(j["eos_token_id"], source, "eos_token_id", c.vocab_size));
  }
  if (f.Has("bos_token_id") && j["bos_token_id"].is_number_integer()) {
    SLUICE_ASSIGN_OR_RETURN(std::vector<int32_t> bos,
                            ParseIds(j["bos_token_id"], source, "bos_token_id", c.vocab_size));
    c.bos_token_id = bos.front();
  }
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir,
                                            const std::string& quantization) {
  namespace fs = std::filesystem;
  const fs::path config_path = fs::path(dir) / "config.json";
  auto text = ReadFile(config_path);
  if (!text.ok()) return text.status();
  auto config = ParseModelConfig(*text, config_path.string());
  if (!config.ok()) return config.status();
  const fs::path gen_path = fs::path(dir) / "generation_config.json";
  if (fs::exists(gen_path)) {
    auto gen_text = ReadFile(gen_path);
    if (!gen_text.ok()) return gen_text.status();
    json g = json::parse(*gen_text, nullptr, /*allow_exceptions=*/false);
    if (g.is_discarded() || !g.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(gen_path.string(), ": not a JSON object"));
    }
    if (g.contains("eos_token_id") && !g["eos_token_id"].is_null()) {
      SLUICE_ASSIGN_OR_RETURN(config->eos_token_ids, ParseIds(g["eos_token_id"], gen_path.string(),
                                                              "eos_token_id", config->vocab_size));
    }
  }
  if (!quantization.empty() && quantization != "fp8") {
    return absl::InvalidArgumentError(
        absl::StrCat("--quantization ", quantization, ": supported: fp8"));
  }
  if (quantization.empty() || config->fp8.enabled) return config;  // FP8 checkpoints as stored
  if (config->num_experts > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--quantization fp8: ", dir,
                     " is a mixture of experts; FP8 experts are not supported yet"));
  }
  Fp8Scheme& s = config->fp8;
  s.enabled = true;
  s.on_load = true;
  s.layout = "fp8 on load";
  s.weights = Fp8Scheme::Weights::kChannel;
  s.inputs = Fp8Scheme::Inputs::kPerToken;
  return config;
}

}  // namespace sluice
