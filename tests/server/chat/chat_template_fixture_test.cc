// Renders the stored conversations of the fixtures with their models' chat templates and
// compares byte for byte with what jinja2, set up as transformers sets it up, rendered.
#include <map>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/chat/chat_template.h"
#include "tests/common/fixtures.h"

namespace sluice {
namespace {

using nlohmann::ordered_json;

// A special token in tokenizer_config.json is a string or an AddedToken object.
void AddSpecialToken(const ordered_json& config, const std::string& key, ordered_json* context) {
  if (!config.contains(key)) return;
  const ordered_json& token = config[key];
  if (token.is_string()) (*context)[key] = token;
  if (token.is_object() && token.contains("content")) (*context)[key] = token["content"];
}

// Returns how many cases rendered identically; every mismatch is a test failure.
int CheckCases(const std::string& config_path, const std::string& cases_path) {
  const ordered_json config = ordered_json::parse(testing::ReadFileOrDie(config_path));
  const ordered_json fixture = ordered_json::parse(testing::ReadFileOrDie(cases_path));
  absl::StatusOr<std::string> source = ChatTemplateSource(nlohmann::json::parse(config.dump()));
  EXPECT_TRUE(source.ok()) << source.status();
  if (!source.ok()) return 0;
  absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl = ChatTemplate::Parse(*source);
  EXPECT_TRUE(tmpl.ok()) << tmpl.status();
  if (!tmpl.ok()) return 0;
  int num_identical = 0;
  const ordered_json& cases = fixture.at("cases");
  EXPECT_FALSE(cases.empty());
  for (size_t i = 0; i < cases.size(); ++i) {
    const ordered_json& c = cases[i];
    // As transformers calls render: messages, tools, documents, add_generation_prompt,
    // the tokenizer's special tokens, then the extra keyword arguments.
    ordered_json context = ordered_json::object();
    context["messages"] = c.at("messages");
    context["tools"] = c.contains("tools") ? c["tools"] : ordered_json(nullptr);
    context["documents"] = nullptr;
    context["add_generation_prompt"] = c.at("add_generation_prompt");
    for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
      AddSpecialToken(config, key, &context);
    }
    for (const auto& [key, value] : c.at("kwargs").items()) context[key] = value;
    absl::StatusOr<std::string> rendered = (*tmpl)->Render(context);
    EXPECT_TRUE(rendered.ok()) << cases_path << " case " << i << ": " << rendered.status();
    if (!rendered.ok()) continue;
    EXPECT_EQ(*rendered, c.at("rendered").get<std::string>()) << cases_path << " case " << i;
    num_identical += *rendered == c.at("rendered").get<std::string>();
  }
  std::printf("%s: %d/%zu identical\n", cases_path.c_str(), num_identical, cases.size());
  return num_identical;
}

TEST(ChatTemplateFixtureTest, TinyModelChatMl) {
  const std::string shared = testing::SharedDir();
  CheckCases(testing::TinyModelDir() + "/tokenizer_config.json",
             shared + "/fixtures/chat_cases.json");
}

TEST(ChatTemplateFixtureTest, Llama31) {
  const std::string dir = testing::SharedDir() + "/fixtures/tokenizers/llama3_1";
  CheckCases(dir + "/tokenizer_config.json", dir + "/chat_cases.json");
}

TEST(ChatTemplateFixtureTest, Qwen3) {
  const std::string dir = testing::SharedDir() + "/fixtures/tokenizers/qwen3";
  CheckCases(dir + "/tokenizer_config.json", dir + "/chat_cases.json");
}

// Templates in the style of published Llama-3.1 (tools), Mistral (tools, role checks) and
// Qwen2.5 (tools) ones, over conversations with tools, tool calls and unicode; jinja2's
// renders and raise_exception messages are in testdata/cases.json.
TEST(ChatTemplateFixtureTest, StyleTemplates) {
  const std::string dir = testing::SourceRoot() + "/tests/server/chat/testdata";
  const ordered_json fixture = ordered_json::parse(testing::ReadFileOrDie(dir + "/cases.json"));
  std::map<std::string, std::unique_ptr<ChatTemplate>> templates;
  int num_identical = 0;
  const ordered_json& cases = fixture.at("cases");
  for (size_t i = 0; i < cases.size(); ++i) {
    const ordered_json& c = cases[i];
    const std::string name = c.at("template").get<std::string>();
    if (templates.count(name) == 0) {
      absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl =
          ChatTemplate::Parse(testing::ReadFileOrDie(dir + "/" + name + ".jinja"));
      ASSERT_TRUE(tmpl.ok()) << name << ": " << tmpl.status();
      templates[name] = *std::move(tmpl);
    }
    ordered_json context = fixture.at("extra_context");
    context["messages"] = fixture.at("conversations").at(c.at("conversation").get<size_t>());
    context["tools"] = c.at("with_tools").get<bool>() ? fixture.at("tools") : ordered_json();
    context["add_generation_prompt"] = c.at("add_generation_prompt");
    absl::StatusOr<std::string> rendered = templates[name]->Render(context);
    if (c.contains("error")) {
      EXPECT_FALSE(rendered.ok()) << name << " case " << i;
      const std::string message = rendered.ok() ? "" : std::string(rendered.status().message());
      // raise_exception's message ends the status message; other errors only must fail.
      const std::string expected = c["error"].is_string() ? c["error"].get<std::string>() : "";
      const bool same =
          !rendered.ok() && message.size() >= expected.size() &&
          message.compare(message.size() - expected.size(), expected.size(), expected) == 0;
      EXPECT_TRUE(same) << name << " case " << i << ": " << message;
      num_identical += same;
      continue;
    }
    ASSERT_TRUE(rendered.ok()) << name << " case " << i << ": " << rendered.status();
    EXPECT_EQ(*rendered, c.at("rendered").get<std::string>()) << name << " case " << i;
    num_identical += *rendered == c.at("rendered").get<std::string>();
  }
  std::printf("style templates: %d/%zu identical\n", num_identical, cases.size());
}

}  // namespace
}  // namespace sluice
