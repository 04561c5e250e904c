// Tokenizer::FromDir / FromJson: reading tokenizer.json and tokenizer_config.json.
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/added_tokens.h"
#include "server/tokenizer/bpe.h"
#include "server/tokenizer/decoder.h"
#include "server/tokenizer/normalizer.h"
#include "server/tokenizer/pretokenizer.h"
#include "server/tokenizer/tokenizer.h"

namespace sluice {
namespace {

using Json = nlohmann::json;

absl::Status Annotate(const absl::Status& status, std::string_view where) {
  return absl::Status(status.code(), absl::StrCat(utf8::View(where), ": ", status.message()));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return contents.str();
}

// Appends the ids a post-processor adds around a single sequence.
absl::Status ParsePostProcessor(const Json& config, std::vector<int32_t>* prefix,
                                std::vector<int32_t>* suffix) {
  const std::string type = config.at("type").get<std::string>();
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "Sequence") {
    for (const Json& part : config.at("processors")) {
      if (absl::Status s = ParsePostProcessor(part, prefix, suffix); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    prefix->insert(prefix->begin(), config.at("cls").at(1).get<int32_t>());
    suffix->push_back(config.at("sep").at(1).get<int32_t>());
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") {
    return absl::InvalidArgumentError(absl::StrCat("unsupported post_processor type '", type, "'"));
  }
  const Json& specials = config.at("special_tokens");
  std::vector<int32_t> before, after;
  bool seen_sequence = false;
  for (const Json& item : config.at("single")) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    const std::string name = item.at("SpecialToken").at("id").get<std::string>();
    if (!specials.contains(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("TemplateProcessing: no special token '", name, "'"));
    }
    for (const Json& id : specials.at(name).at("ids")) {
      (seen_sequence ? after : before).push_back(id.get<int32_t>());
    }
  }
  prefix->insert(prefix->begin(), before.begin(), before.end());
  suffix->insert(suffix->end(), after.begin(), after.end());
  return absl::OkStatus();
}

// The content of a tokenizer_config.json token field: a string or {"content": ...}.
std::optional<std::string> TokenContent(const Json& config, const char* field) {
  if (!config.contains(field)) return std::nullopt;
  const Json& value = config.at(field);
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content")) return value.at("content").get<std::string>();
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromDir(const std::string& dir) {
  const std::string json_path = dir + "/tokenizer.json";
  auto json = ReadFile(json_path);
  if (!json.ok()) return json.status();
  std::string config;
  const std::string config_path = dir + "/tokenizer_config.json";
  if (std::ifstream(config_path).good()) {
    auto read = ReadFile(config_path);
    if (!read.ok()) return read.status();
    config = std::move(*read);
  }
  auto tokenizer = FromJson(*json, config);
  if (!tokenizer.ok()) return Annotate(tokenizer.status(), dir);
  // Newer checkpoints keep the template in its own file.
  const std::string template_path = dir + "/chat_template.jinja";
  if ((*tokenizer)->chat_template_.empty() && std::ifstream(template_path).good()) {
    auto read = ReadFile(template_path);
    if (!read.ok()) return read.status();
    (*tokenizer)->chat_template_ = std::move(*read);
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view tokenizer_json,
                                                               std::string_view config_json) {
  std::unique_ptr<Tokenizer> tokenizer(new Tokenizer());
  if (absl::Status s = tokenizer->LoadTokenizerJson(tokenizer_json); !s.ok()) {
    return Annotate(s, "tokenizer.json");
  }
  if (!config_json.empty()) {
    if (absl::Status s = tokenizer->LoadConfigJson(config_json); !s.ok()) {
      return Annotate(s, "tokenizer_config.json");
    }
  }
  return tokenizer;
}

absl::Status Tokenizer::LoadTokenizerJson(std::string_view text) {
  const Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
  if (!root.is_object()) return absl::InvalidArgumentError("top level is not an object");
  if (!root.contains("model") || !root.at("model").is_object()) {
    return absl::InvalidArgumentError("no 'model' object");
  }
  std::string where = "normalizer";
  try {
    if (const Json& j = root.value("normalizer", Json()); !j.is_null()) {
      auto made = NormalizerFromJson(j);
      if (!made.ok()) return Annotate(made.status(), where);
      normalizer_ = std::move(*made);
    }
    where = "added_tokens";
    auto added = AddedTokens::FromJson(root.value("added_tokens", Json()), normalizer_.get());
    if (!added.ok()) return Annotate(added.status(), where);
    added_ = std::make_unique<AddedTokens>(std::move(*added));
    if (const Json& j = root.value("pre_tokenizer", Json()); !j.is_null()) {
      where = "pre_tokenizer";
      auto made = PreTokenizerFromJson(j);
      if (!made.ok()) return Annotate(made.status(), where);
      pre_tokenizer_ = std::move(*made);
    }
    where = "model";
    const Json& model = root.at("model");
    const std::string type = model.value("type", model.contains("merges") ? "BPE" : "");
    if (type != "BPE") {
      return absl::InvalidArgumentError(absl::StrCat("model: unsupported model type '", type, "'"));
    }
    auto made_model =
        BpeModel::FromJson(model, pre_tokenizer_ != nullptr && pre_tokenizer_->is_byte_level());
    if (!made_model.ok()) return Annotate(made_model.status(), where);
    model_ = std::move(*made_model);
    if (const Json& j = root.value("post_processor", Json()); !j.is_null()) {
      where = "post_processor";
      if (absl::Status s = ParsePostProcessor(j, &special_prefix_, &special_suffix_); !s.ok()) {
        return Annotate(s, where);
      }
    }
    if (const Json& j = root.value("decoder", Json()); !j.is_null()) {
      where = "decoder";
      auto made = DecoderFromJson(j);
      if (!made.ok()) return Annotate(made.status(), where);
      decoder_ = std::move(*made);
    }
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::LoadConfigJson(std::string_view text) {
  const Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
  if (!root.is_object()) return absl::InvalidArgumentError("top level is not an object");
  try {
    if (const auto bos = TokenContent(root, "bos_token")) bos_id_ = TokenToId(*bos);
    if (const auto eos = TokenContent(root, "eos_token")) {
      if (const auto id = TokenToId(*eos)) eos_ids_.push_back(*id);
    }
    if (root.contains("add_bos_token") && !root.at("add_bos_token").is_null()) {
      add_bos_token_ = root.at("add_bos_token").get<bool>();
    }
    if (root.contains("chat_template") && !root.at("chat_template").is_null()) {
      const Json& tmpl = root.at("chat_template");
      if (tmpl.is_string()) {
        chat_template_ = tmpl.get<std::string>();
      } else {
        for (const Json& named : tmpl) {
          if (chat_template_.empty() || named.at("name").get<std::string>() == "default") {
            chat_template_ = named.at("template").get<std::string>();
          }
        }
      }
    }
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(e.what());
  }
  return absl::OkStatus();
}

}  // namespace sluice
