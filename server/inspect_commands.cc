// `sluice tokenize` and `sluice chat-template`: commands for debugging prompts, using
// the same tokenizer and chat-template code as the server.
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/api.h"
#include "nlohmann/json.hpp"
#include "server/chat/chat_template.h"
#include "server/commands.h"
#include "server/tokenizer/tokenizer.h"
#include "spdlog/spdlog.h"

namespace sluice {
namespace {

using nlohmann::json;

struct TokenizeFlags {
  std::string tokenizer;
  std::string text;
  std::string file;
  std::string jsonl;
  bool add_special_tokens = false;
  bool json = false;
};

struct ChatTemplateFlags {
  std::string tokenizer;
  std::string template_file;
  std::string conversation;
  std::string jsonl;
  bool add_generation_prompt = false;
};

// Runs `one` on each JSON line of `path`, printing its answer as one JSON line: the
// batch form of the inspect commands, for differential tests against reference
// implementations.
int ForEachJsonLine(const std::string& path,
                    const std::function<json(const nlohmann::ordered_json&)>& one) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    spdlog::error("{}: cannot open", path);
    return 2;
  }
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    auto value = nlohmann::ordered_json::parse(line, nullptr, false);
    json out = value.is_discarded() ? json{{"error", absl::StrCat(path, ":", n, ": not JSON")}}
                                    : one(value);
    std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  }
  return 0;
}

bool ReadAll(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

int RunTokenize(const TokenizeFlags& f) {
  auto tok = Tokenizer::FromDir(f.tokenizer.empty() ? DefaultModelDir() : f.tokenizer);
  if (!tok.ok()) {
    spdlog::error("{}", std::string(tok.status().message()));
    return 2;
  }
  if (!f.jsonl.empty()) {
    const Tokenizer& t = **tok;
    return ForEachJsonLine(f.jsonl, [&](const nlohmann::ordered_json& line) -> json {
      if (!line.is_object() || !line.contains("text") || !line["text"].is_string()) {
        return {{"error", "each line must be {\"text\": string, \"add_special_tokens\": bool}"}};
      }
      auto ids = t.Encode(line["text"].get<std::string>(), line.value("add_special_tokens", false));
      if (!ids.ok()) return {{"error", std::string(ids.status().message())}};
      return {{"ids", *ids}, {"decoded", t.Decode(*ids, /*skip_special_tokens=*/false)}};
    });
  }
  std::string text = f.text;
  if (!f.file.empty() && !ReadAll(f.file, &text)) {
    spdlog::error("{}: cannot open", f.file);
    return 2;
  }
  auto ids = (*tok)->Encode(text, f.add_special_tokens);
  if (!ids.ok()) {
    spdlog::error("{}", std::string(ids.status().message()));
    return 2;
  }
  std::vector<std::string> tokens;
  for (int32_t id : *ids) tokens.push_back((*tok)->IdToToken(id));
  if (f.json) {
    std::cout << json{{"ids", *ids}, {"tokens", tokens}}.dump(-1, ' ', false,
                                                              json::error_handler_t::replace)
              << "\n";
    return 0;
  }
  for (size_t i = 0; i < ids->size(); ++i) {
    std::cout << (*ids)[i] << "\t"
              << json(tokens[i]).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  }
  std::cerr << ids->size() << " tokens\n";
  return 0;
}

int RunChatTemplate(const ChatTemplateFlags& f) {
  auto tok = Tokenizer::FromDir(f.tokenizer.empty() ? DefaultModelDir() : f.tokenizer);
  if (!tok.ok()) {
    spdlog::error("{}", std::string(tok.status().message()));
    return 2;
  }
  std::string source = (*tok)->chat_template();
  if (!f.template_file.empty() && !ReadAll(f.template_file, &source)) {
    spdlog::error("{}: cannot open", f.template_file);
    return 2;
  }
  if (source.empty()) {
    spdlog::error("{} has no chat template", f.tokenizer);
    return 2;
  }
  auto tmpl = ChatTemplate::Parse(source);
  if (!tmpl.ok()) {
    spdlog::error("chat template: {}", std::string(tmpl.status().message()));
    return 2;
  }
  if (!f.jsonl.empty()) {
    // Each line is the whole context (messages, add_generation_prompt, tokens, ...).
    return ForEachJsonLine(f.jsonl, [&](const nlohmann::ordered_json& context) -> json {
      auto rendered = (*tmpl)->Render(context);
      if (!rendered.ok()) return {{"error", std::string(rendered.status().message())}};
      return {{"text", *rendered}};
    });
  }
  std::string text;
  if (!ReadAll(f.conversation, &text)) {
    spdlog::error("{}: cannot open", f.conversation);
    return 2;
  }
  nlohmann::ordered_json conv = nlohmann::ordered_json::parse(text, nullptr, false);
  if (conv.is_discarded() || !conv.is_object() || !conv.contains("messages")) {
    spdlog::error("{}: must be a JSON object with \"messages\"", f.conversation);
    return 2;
  }
  nlohmann::ordered_json context = conv;
  context["add_generation_prompt"] = f.add_generation_prompt;
  const Tokenizer& t = **tok;
  if (t.bos_id() && !context.contains("bos_token")) context["bos_token"] = t.IdToToken(*t.bos_id());
  if (!t.eos_ids().empty() && !context.contains("eos_token")) {
    context["eos_token"] = t.IdToToken(t.eos_ids().front());
  }
  auto rendered = (*tmpl)->Render(context);
  if (!rendered.ok()) {
    spdlog::error("{}", std::string(rendered.status().message()));
    return 2;
  }
  std::cout << *rendered;
  return 0;
}

}  // namespace

void AddInspectCommands(CLI::App& app, std::function<int()>* run) {
  auto tf = std::make_shared<TokenizeFlags>();
  CLI::App* tok = app.add_subcommand("tokenize", "Print the token ids and strings of a text");
  tok->add_option("--tokenizer", tf->tokenizer,
                  "Directory with tokenizer.json (default: the "
                  "embedded model)");
  auto* text = tok->add_option("--text", tf->text, "Text to encode");
  auto* file = tok->add_option("--file", tf->file, "File whose contents to encode");
  auto* jsonl =
      tok->add_option("--jsonl", tf->jsonl,
                      "Encode each {\"text\", \"add_special_tokens\"} line of FILE; print "
                      "{\"ids\", \"decoded\"} or {\"error\"} lines");
  text->excludes(file);
  jsonl->excludes(text)->excludes(file);
  tok->add_flag("--add-special-tokens", tf->add_special_tokens,
                "Apply the tokenizer's post-processor (BOS and the like)");
  tok->add_flag("--json", tf->json, "Print {\"ids\": [...], \"tokens\": [...]}");
  tok->callback([tf, tok, run] {
    if (tok->count("--text") == 0 && tok->count("--file") == 0 && tok->count("--jsonl") == 0) {
      throw CLI::RequiredError("--text, --file or --jsonl");
    }
    *run = [tf] { return RunTokenize(*tf); };
  });

  auto cf = std::make_shared<ChatTemplateFlags>();
  CLI::App* chat =
      app.add_subcommand("chat-template", "Render a conversation with a model's chat template");
  chat->add_option("--tokenizer", cf->tokenizer,
                   "Directory with tokenizer_config.json (default: the embedded model)");
  chat->add_option("--template", cf->template_file,
                   "A chat template file to use instead of the tokenizer's");
  auto* conversation = chat->add_option("--conversation", cf->conversation,
                                        "JSON file with \"messages\" and optional \"tools\"");
  chat->add_option("--jsonl", cf->jsonl,
                   "Render each context line of FILE (messages, add_generation_prompt, ...); "
                   "print {\"text\"} or {\"error\"} lines")
      ->excludes(conversation);
  chat->add_flag("--add-generation-prompt", cf->add_generation_prompt,
                 "End with the assistant turn's opening");
  chat->callback([cf, chat, run] {
    if (chat->count("--conversation") == 0 && chat->count("--jsonl") == 0) {
      throw CLI::RequiredError("--conversation or --jsonl");
    }
    *run = [cf] { return RunChatTemplate(*cf); };
  });
}

}  // namespace sluice
