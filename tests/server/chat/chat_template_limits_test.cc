// Errors and limits of the chat-template renderer: syntax errors name line and column,
// raise_exception carries its message, and no template or context can run away with
// time, memory or stack. Concurrent renders of one parsed template agree.
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/chat/chat_template.h"
#include "tests/common/fixtures.h"

namespace sluice {
namespace {

using nlohmann::ordered_json;

absl::Status RenderStatus(const std::string& source, const ordered_json& context,
                          const ChatTemplateLimits& limits = {}) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl = ChatTemplate::Parse(source, limits);
  if (!tmpl.ok()) return tmpl.status();
  return (*tmpl)->Render(context).status();
}

struct ErrorCase {
  std::string source;
  std::string message;  // The whole status message.
};

TEST(ChatTemplateErrorTest, SyntaxErrorsNameLineAndColumn) {
  const ErrorCase cases[] = {
      {"{% if x %}",
       "template syntax error at line 1, column 11: unexpected end of template, expected "
       "'elif' or 'else' or 'endif'"},
      {"a\n  {{ x | }}",
       "template syntax error at line 2, column 10: expected a name, got end of print statement"},
      {"{{ 'abc }}", "template syntax error at line 1, column 4: unterminated string literal"},
      {"line\n{% foo %}", "template syntax error at line 2, column 4: unknown tag 'foo'"},
      {"{% for x in y %}\n{% endif %}",
       "template syntax error at line 2, column 4: unexpected 'endif', expected 'endfor' or "
       "'else'"},
      {"{% endfor %}", "template syntax error at line 1, column 4: unexpected 'endfor'"},
      {"\n\n{# abc", "template syntax error at line 3, column 1: missing end of comment tag"},
      {"{{ [1, 2) }}", "template syntax error at line 1, column 9: unexpected ')', expected ']'"},
      {"{% for x in l %}{% endfor %}{% break %}",
       "template syntax error at line 1, column 32: 'break' outside of a loop"},
      {"{{ x", "template syntax error at line 1, column 1: missing end of variable tag '}}'"},
      {"{% set x = %}",
       "template syntax error at line 1, column 12: expected an expression, got end of "
       "statement block"},
      {"{{ 1 2 }}",
       "template syntax error at line 1, column 6: expected end of print statement, got '2'"},
      {"{% for x y %}", "template syntax error at line 1, column 10: expected 'in', got 'y'"},
      {"{{ x @ 1 }}", "template syntax error at line 1, column 6: unexpected character '@'"},
      {"{{ x|nofilter }}", "template syntax error at line 1, column 5: no filter named 'nofilter'"},
      {"{% for x in y %}{% if x is nottest %}{% endif %}{% endfor %}{{ y is odder }}",
       "template syntax error at line 1, column 66: no test named 'odder'"},
      {"{{ x is defined is true }}",
       "template syntax error at line 1, column 17: cannot chain tests with 'is'"},
  };
  for (const ErrorCase& c : cases) {
    absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl = ChatTemplate::Parse(c.source);
    ASSERT_FALSE(tmpl.ok()) << c.source;
    EXPECT_EQ(tmpl.status().code(), absl::StatusCode::kInvalidArgument) << c.source;
    EXPECT_EQ(std::string(tmpl.status().message()), c.message) << c.source;
  }
}

TEST(ChatTemplateErrorTest, RenderErrorsNameLineAndColumn) {
  const ErrorCase cases[] = {
      {"{% if true %}\n  {{ u.attr }}\n{% endif %}",
       "chat template error at line 2, column 7: 'u' is undefined"},
      {"{{ 1 + 'a' }}",
       "chat template error at line 1, column 6: unsupported operand type(s) for +: 'int' and "
       "'str'"},
      {"{% if true %}{{ x|nofilter }}{% endif %}",
       "chat template error at line 1, column 18: no filter named 'nofilter'"},
      {"{% set x = 1 %}{% set x.y = 2 %}",
       "chat template error at line 1, column 16: cannot assign attribute on non-namespace "
       "object 'x'"},
      {"{% for i in none %}{% endfor %}",
       "chat template error at line 1, column 13: 'NoneType' object is not iterable"},
  };
  for (const ErrorCase& c : cases) {
    const absl::Status status = RenderStatus(c.source, ordered_json::object());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.source;
    EXPECT_EQ(std::string(status.message()), c.message) << c.source;
  }
}

TEST(ChatTemplateErrorTest, UnknownFilterInsideIfFailsOnlyWhenItRuns) {
  const std::string source = "{% if x %}{{ x|nofilter }}{% endif %}{{ 'ok' if x else y|nope }}";
  EXPECT_FALSE(RenderStatus(source, {{"x", false}, {"y", 1}}).ok());  // The inline if runs nope.
  EXPECT_TRUE(RenderStatus("{% if x %}{{ x|nofilter }}{% endif %}ok", {{"x", false}}).ok());
  const absl::Status status = RenderStatus(source, {{"x", true}});
  EXPECT_NE(std::string(status.message()).find("no filter named 'nofilter'"), std::string::npos)
      << status;
}

TEST(ChatTemplateErrorTest, RaiseExceptionCarriesItsMessage) {
  const std::string source =
      "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}"
      "{{ raise_exception('Conversation roles must alternate user/assistant') }}"
      "{% endif %}{{ m.content }}{% endfor %}";
  const ordered_json good = {{"messages", {{{"role", "user"}, {"content", "a"}}}}};
  EXPECT_TRUE(RenderStatus(source, good).ok());
  const ordered_json bad = {
      {"messages", {{{"role", "user"}, {"content", "a"}}, {{"role", "user"}, {"content", "b"}}}}};
  const absl::Status status = RenderStatus(source, bad);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(status.message()),
            "chat template error at line 1, column 95: Conversation roles must alternate "
            "user/assistant");
}

TEST(ChatTemplateErrorTest, ContextMustBeAnObject) {
  EXPECT_EQ(RenderStatus("x", ordered_json::array()).code(), absl::StatusCode::kInvalidArgument);
}

// Each case must fail with a message containing `message`, quickly and without a crash.
TEST(ChatTemplateLimitsTest, RunawayTemplatesFail) {
  const ErrorCase cases[] = {
      {"{{ " + std::string(10000, '(') + "1" + std::string(10000, ')') + " }}",
       "template nested too deeply"},
      {[] {
         std::string s = "{{ 1";
         for (int i = 0; i < 100000; ++i) s += " + 1";
         return s + " }}";
       }(),
       "template nested too deeply"},
      {"{{ " + std::string(5000, '-') + "1 }}", "template nested too deeply"},
      {"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion too deep"},
      {"{{ 'x' * 10000000 }}", "string repetition exceeds the size limit"},
      {"{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
       "{% endfor %}",
       "string exceeds the size limit"},
      {"{{ range(1000000000)|length }}", "range() exceeds the size limit"},
      {"{% for i in range(100000) %}{% set s = 'x' * 100000 %}{% endfor %}", "bytes of strings"},
      {"{% set ns = namespace() %}{% set ns.me = [ns] %}",
       "a namespace cannot be stored inside a namespace"},
      {"{% set a = namespace() %}{% set b = namespace(inner=a) %}",
       "a namespace cannot be stored inside a namespace"},
      {"{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}"
       "{% endfor %}",
       "value stored in a namespace is nested too deeply"},
      {"{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}",
       "rendered output exceeds 1048576 bytes"},
  };
  for (const ErrorCase& c : cases) {
    const absl::Status status = RenderStatus(c.source, ordered_json::object());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.source.substr(0, 60);
    EXPECT_NE(std::string(status.message()).find(c.message), std::string::npos)
        << c.source.substr(0, 60) << " -> " << status;
  }
}

TEST(ChatTemplateLimitsTest, LoopIterationsAreCountedOverTheWholeRender) {
  ChatTemplateLimits limits;
  limits.max_loop_iterations = 1000;
  const std::string nested =
      "{% for i in range(30) %}{% for j in range(30) %}{% endfor %}{% endfor %}";
  EXPECT_TRUE(RenderStatus(nested, ordered_json::object(), limits).ok());  // 930 iterations.
  const absl::Status status =
      RenderStatus("{% for i in range(40) %}{% for j in range(40) %}{% endfor %}{% endfor %}",
                   ordered_json::object(), limits);
  EXPECT_NE(std::string(status.message()).find("more than 1000 loop iterations"), std::string::npos)
      << status;
}

TEST(ChatTemplateLimitsTest, OutputLimitIsConfigurable) {
  ChatTemplateLimits limits;
  limits.max_output_bytes = 10;
  EXPECT_TRUE(RenderStatus("0123456789", ordered_json::object(), limits).ok());
  const absl::Status status = RenderStatus("0123456789x", ordered_json::object(), limits);
  EXPECT_NE(std::string(status.message()).find("rendered output exceeds 10 bytes"),
            std::string::npos)
      << status;
}

TEST(ChatTemplateLimitsTest, DeeplyNestedContextIsRefused) {
  ordered_json deep = "leaf";
  for (int i = 0; i < 200; ++i) deep = ordered_json::array({deep});
  const absl::Status status = RenderStatus("{{ x }}", {{"x", deep}});
  EXPECT_NE(std::string(status.message()).find("nested too deeply"), std::string::npos) << status;
}

TEST(ChatTemplateConcurrencyTest, ThreadsRenderOneTemplateIdentically) {
  const std::string dir = testing::SharedDir() + "/fixtures/tokenizers/qwen3";
  const nlohmann::json config =
      nlohmann::json::parse(testing::ReadFileOrDie(dir + "/tokenizer_config.json"));
  const ordered_json cases =
      ordered_json::parse(testing::ReadFileOrDie(dir + "/chat_cases.json")).at("cases");
  absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl =
      ChatTemplate::Parse(ChatTemplateSource(config).value());
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  std::vector<ordered_json> contexts;
  std::vector<std::string> expected;
  for (const ordered_json& c : cases) {
    ordered_json context = {{"messages", c.at("messages")},
                            {"tools", c.value("tools", ordered_json(nullptr))},
                            {"add_generation_prompt", c.at("add_generation_prompt")}};
    for (const auto& [key, value] : c.at("kwargs").items()) context[key] = value;
    contexts.push_back(context);
    expected.push_back(c.at("rendered").get<std::string>());
  }
  constexpr int kNumThreads = 8;
  constexpr int kRendersPerThread = 50;
  std::vector<int> num_mismatches(kNumThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kNumThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRendersPerThread; ++r) {
        const size_t k = static_cast<size_t>(t + r) % contexts.size();
        absl::StatusOr<std::string> out = (*tmpl)->Render(contexts[k]);
        num_mismatches[t] += !out.ok() || *out != expected[k];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kNumThreads; ++t) EXPECT_EQ(num_mismatches[t], 0) << "thread " << t;
}

}  // namespace
}  // namespace sluice
