// Language features of the chat-template renderer. The expected strings are what jinja2
// 3.1.6 renders for the same template and context when set up as transformers sets it up
// (sandboxed, trim_blocks, lstrip_blocks, loopcontrols, tojson without ASCII escaping).
#include "server/chat/chat_template.h"

#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace sluice {
namespace {

constexpr const char* kContext =
    R"__({"s": "  Hello, World  ", "u": "日本語🚀", "l": [3, 1, 2], "d": {"b": 1, "a": [1, 2]},
        "n": null, "i": 7, "msgs": [{"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]})__";

struct RenderCase {
  const char* name;
  const char* source;
  const char* context;  // JSON object.
  const char* expected;
};

const RenderCase kCases[] = {
    {"Output", R"__({{ 'a' }}{{ 1 }}{{ 2.5 }}{{ none }}{{ true }}{{ missing }}|)__", R"__({})__",
     R"__(a12.5NoneTrue|)__"},
    {"Comment", R"__(a{# note #}b)__", R"__({})__", R"__(ab)__"},
    {"WhitespaceControlDash", R"__(a  {{- 'b' -}}  c
  {%- if true %} d{% endif %})__",
     R"__({})__", R"__(abc d)__"},
    {"TrimBlocksAndLstripBlocks", R"__({% for x in l %}
    {% if x > 1 %}
  {{ x }}
    {% endif %}
{% endfor %}
)__",
     kContext,
     R"__(  3
  2
)__"},
    {"PlusDisablesLstripAndTrim", R"__(  {%+ if true +%}
x{% endif %})__",
     R"__({})__",
     R"__(  
x)__"},
    {"TrailingNewlineDropped", R"__(a
)__",
     R"__({})__", R"__(a)__"},
    {"ForLoopVariables",
     R"__({% for m in msgs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }} {% endfor %})__",
     kContext, R"__(10TrueFalse332 21FalseFalse321 32FalseTrue310 )__"},
    {"ForElse", R"__({% for x in [] %}x{% else %}empty{% endfor %})__", R"__({})__",
     R"__(empty)__"},
    {"ForFilterAndUnpack",
     R"__({% for k, v in d.items() if k != 'a' %}{{ k }}={{ v }}{% endfor %})__", kContext,
     R"__(b=1)__"},
    {"BreakContinue",
     R"__({% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %})__",
     R"__({})__", R"__(023)__"},
    {"LoopScope", R"__({% set x = 0 %}{% for i in l %}{% set x = i %}{% endfor %}{{ x }})__",
     kContext, R"__(0)__"},
    {"Namespace",
     R"__({% set ns = namespace(total=0, last=none) %}{% for i in l %}{% set ns.total = ns.total + i %}{% set ns.last = i %}{% endfor %}{{ ns.total }} {{ ns.last }})__",
     kContext, R"__(6 2)__"},
    {"IfElifElse",
     R"__({% for i in [1, 2, 3] %}{% if i == 1 %}one{% elif i == 2 %}two{% else %}many{% endif %} {% endfor %})__",
     R"__({})__", R"__(one two many )__"},
    {"InlineIf", R"__({{ 'y' if i > 5 else 'n' }}{{ 'y' if n else 'n' }}[{{ 'x' if false }}])__",
     kContext, R"__(yn[])__"},
    {"SetBlock", R"__({% set b %}<{{ i }}>{% endset %}{{ b }}{{ b|length }})__", kContext,
     R"__(<7>3)__"},
    {"TupleSet", R"__({% set a, b = [1, 2] %}{{ a }}{{ b }}{{ (1,) }}{{ (a, b) }})__", R"__({})__",
     R"__(12(1,)(1, 2))__"},
    {"Macro",
     R"__({% macro tag(name, body='-') %}<{{ name }}>{{ body }}</{{ name }}>{% endmacro %}{{ tag('a') }}{{ tag('b', body='x') }}{{ tag(name='c', body=i) }})__",
     kContext, R"__(<a>-</a><b>x</b><c>7</c>)__"},
    {"RecursiveMacro",
     R"__({% macro count(k) %}{{ k }}{% if k > 0 %}{{ count(k - 1) }}{% endif %}{% endmacro %}{{ count(3) }})__",
     R"__({})__", R"__(3210)__"},
    {"Arithmetic",
     R"__({{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 8 }} {{ 1 + 2 * 3 }} {{ 'ab' * 2 }} {{ 1 ~ 'x' ~ none }} {{ 0.1 + 0.2 }} {{ -i }})__",
     kContext, R"__(3 -4 2 3.5 256 7 abab 1xNone 0.30000000000000004 -7)__"},
    {"Comparison",
     R"__({{ 1 == 1.0 }}{{ 'a' < 'b' }}{{ 1 < i < 10 }}{{ [1, 2] == [1, 2] }}{{ d == {'a': [1, 2], 'b': 1} }}{{ i != 7 }})__",
     kContext, R"__(TrueTrueTrueTrueTrueFalse)__"},
    {"Logic",
     R"__({{ n or 'dflt' }}{{ i and 'yes' }}{{ not n }}{{ 1 in l }}{{ 5 not in l }}{{ 'a' in d }}{{ 'ell' in s }})__",
     kContext, R"__(dfltyesTrueTrueTrueTrueTrue)__"},
    {"Literals",
     R"__({{ [1, 'two', none, true] }}{{ {'k': 'v', 'n': [1]} }}{{ 'it\'s' }}{{ "q\"\n" }}{{ 'a' 'b' }}{{ 1e3 }}{{ 100.0 }}{{ 1e20 }}{{ 1.5e-5 }})__",
     R"__({})__",
     R"__([1, 'two', None, True]{'k': 'v', 'n': [1]}it'sq"
ab1000.0100.01e+201.5e-05)__"},
    {"SlicingLists",
     R"__({{ l[::-1] }}{{ l[1:] }}{{ l[:-1] }}{{ l[-1] }}{{ l[-2:] }}{{ l[::2] }}{{ l[10:] }}[{{ l[5] }}]{{ l.0 }})__",
     kContext, R"__([2, 1, 3][1, 2][3, 1]2[1, 2][3, 2][][]3)__"},
    {"SlicingStringsByCodePoint",
     R"__({{ u[::-1] }} {{ u[1] }} {{ u[-1] }} {{ u[1:3] }} {{ u|length }})__", kContext,
     R"__(🚀語本日 本 🚀 本語 4)__"},
    {"StringMethods",
     R"__({{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.strip(' Hd') }}|{{ s.startswith('  He') }}{{ s.endswith(('x', '  ')) }}|{{ s.upper() }}|{{ s.lower() }}|{{ 'hello wORLD'.title() }}|{{ s.replace('l', 'L', 2) }}|{{ s.find('W') }})__",
     kContext,
     R"__(Hello, World|Hello, World  |  Hello, World|ello, Worl|TrueTrue|  HELLO, WORLD  |  hello, world  |Hello World|  HeLLo, World  |9)__"},
    {"StringSplit",
     R"__({{ s.split() }}{{ s.split(',') }}{{ 'a<x>b<x>c'.split('<x>')[-1] }}{{ 'a b  c '.split(None, 1) }}{{ ', '.join(['a', 'b']) }})__",
     kContext, R"__(['Hello,', 'World']['  Hello', ' World  ']c['a', 'b  c ']a, b)__"},
    {"DictMethods",
     R"__({{ d.get('b') }}{{ d.get('z') }}{{ d.get('z', 0) }}{{ d.items()|list }}{{ d.keys()|list }}{{ d.values()|list }}{{ d['a'][1] }}{{ d.missing }}|)__",
     kContext, R"__(1None0[('b', 1), ('a', [1, 2])]['b', 'a'][1, [1, 2]]2|)__"},
    {"FiltersText",
     R"__({{ s|trim }}|{{ s|upper }}|{{ s|lower }}|{{ 'hello-wORLD'|title }}|{{ 'hELLO'|capitalize }}|{{ s|replace('o', '0') }}|{{ s|length }}|{{ u|length }}|{{ 12|string ~ '!' }})__",
     kContext,
     R"__(Hello, World|  HELLO, WORLD  |  hello, world  |Hello-World|Hello|  Hell0, W0rld  |16|4|12!)__"},
    {"FiltersDefault",
     R"__({{ missing|default('d') }}{{ n|default('d') }}{{ ''|default('d', true) }}{{ 'x'|d('d') }})__",
     kContext, R"__(dNonedx)__"},
    {"FiltersLists",
     R"__({{ l|first }}{{ l|last }}{{ l|join(', ') }}{{ l|length }}{{ l|list }}{{ 'ab'|list }}{{ l|reverse|list }}{{ l|sort }}{{ l|sort(reverse=true) }}{{ d|items|list }})__",
     kContext,
     R"__(323, 1, 23[3, 1, 2]['a', 'b'][2, 1, 3][1, 2, 3][3, 2, 1][('b', 1), ('a', [1, 2])])__"},
    {"FiltersNumbers",
     R"__({{ 3.7|int }}{{ '42'|int }}{{ 'x'|int }}{{ '4.5'|float }}{{ 2.567|round(1) }}{{ 2.5|round }}{{ 3|float }}{{ -5|abs }})__",
     R"__({})__", R"__(34204.52.62.03.05)__"},
    {"FiltersSelect",
     R"__({{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|join }}{{ msgs|rejectattr('role', 'equalto', 'user')|list|length }}{{ l|select('odd')|list }}{{ l|map('string')|join('-') }})__",
     kContext, R"__(ac1[3, 1]3-1-2)__"},
    {"ToJson",
     R"__({{ d|tojson }} {{ {'é': 'ü\n"', 'z': [1.0, none, false]}|tojson }} {{ [] | tojson }})__",
     kContext, R"__({"b": 1, "a": [1, 2]} {"é": "ü\n\"", "z": [1.0, null, false]} [])__"},
    {"ToJsonIndent", R"__({{ {'b': [1, {'c': 2}], 'a': {}}|tojson(indent=2) }})__", R"__({})__",
     R"__({
  "b": [
    1,
    {
      "c": 2
    }
  ],
  "a": {}
})__"},
    {"ToJsonKeepsKeyOrder", R"__({{ {'z': 1, 'a': 2, 'm': 3}|tojson }})__", R"__({})__",
     R"__({"z": 1, "a": 2, "m": 3})__"},
    {"Tests",
     R"__({{ i is defined }}{{ missing is undefined }}{{ n is none }}{{ s is string }}{{ d is mapping }}{{ l is iterable }}{{ l is sequence }}{{ i is number }}{{ true is true }}{{ false is false }}{{ n is not none }}{{ i is odd }}{{ i is divisibleby 7 }}{{ 3 is in l }})__",
     kContext, R"__(TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrue)__"},
    {"UndefinedRendersEmpty",
     R"__([{{ missing }}][{{ missing|upper }}][{{ n.attr }}][{{ d.nope }}][{% for x in missing %}x{% endfor %}][{{ missing|length }}])__",
     kContext, R"__([][][][][][0])__"},
    {"RangeAndGlobals",
     R"__({{ range(3)|list }}{{ range(1, 7, 2)|list }}{{ range(3, 0, -1)|list }}{{ dict(a=1)['a'] }})__",
     R"__({})__", R"__([0, 1, 2][1, 3, 5][3, 2, 1]1)__"},

    {"ColonAfterBlockTags",
     R"__({% if true: %}a{% else: %}b{% endif %}{% for x in [1]: %}{{ x }}{% endfor %})__",
     R"__({})__", R"__(a1)__"},
    {"StringEscapes", R"__({{ '\101\x41\u00e9\U0001F680' }})__", R"__({})__", R"__(AAé🚀)__"},
    {"AttributePaths", R"__({{ [{'a': {'b': [5, 6]}}]|map(attribute='a.b.1')|list }})__",
     R"__({})__", R"__([6])__"},
    {"UnicodeNames", R"__({% set café = 1 %}{{ café }}{{ [missing] }})__", R"__({})__",
     R"__(1[Undefined])__"},
};

class ChatTemplateRenderTest : public ::testing::TestWithParam<RenderCase> {};

TEST_P(ChatTemplateRenderTest, MatchesJinja2) {
  const RenderCase& c = GetParam();
  absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl = ChatTemplate::Parse(c.source);
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  absl::StatusOr<std::string> out = (*tmpl)->Render(nlohmann::ordered_json::parse(c.context));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, c.expected);
}

INSTANTIATE_TEST_SUITE_P(Features, ChatTemplateRenderTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<RenderCase>& info) {
                           return std::string(info.param.name);
                         });

absl::StatusOr<std::string> RenderOnce(std::string_view source,
                                       const nlohmann::ordered_json& context) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl = ChatTemplate::Parse(source);
  if (!tmpl.ok()) return tmpl.status();
  return (*tmpl)->Render(context);
}

TEST(ChatTemplateTest, GenerationBlockRendersItsBody) {
  // transformers' {% generation %} marks assistant text for masks; it renders as is.
  absl::StatusOr<std::string> out = RenderOnce("{% generation %}kept {{ 1 }}{% endgeneration %}",
                                               nlohmann::ordered_json::object());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "kept 1");
}

TEST(ChatTemplateTest, ContextVariablesAndExtraKwargs) {
  nlohmann::ordered_json context = {{"bos_token", "<s>"},
                                    {"add_generation_prompt", true},
                                    {"enable_thinking", false},
                                    {"tools", nullptr}};
  absl::StatusOr<std::string> out = RenderOnce(
      "{{ bos_token }}{{ add_generation_prompt }}{{ enable_thinking is false }}"
      "{{ tools is none }}{{ tools is defined }}{{ documents is defined }}",
      context);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "<s>TrueTrueTrueTrueFalse");
}

TEST(ChatTemplateTest, OrderedJsonKeepsKeyOrderAndJsonSortsIt) {
  const char* source = "{{ d|tojson }}";
  const nlohmann::ordered_json ordered = {{"d", {{"z", 1}, {"a", 2}}}};
  EXPECT_EQ(RenderOnce(source, ordered).value(), R"({"z": 1, "a": 2})");
  absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl = ChatTemplate::Parse(source);
  ASSERT_TRUE(tmpl.ok());
  const nlohmann::json sorted = {{"d", {{"z", 1}, {"a", 2}}}};
  EXPECT_EQ((*tmpl)->Render(sorted).value(), R"({"a": 2, "z": 1})");
}

TEST(ChatTemplateTest, StrftimeNowFormatsTheCurrentTime) {
  absl::StatusOr<std::string> out =
      RenderOnce("{{ strftime_now('%Y') | length }}{{ strftime_now is defined }}",
                 nlohmann::ordered_json::object());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "4True");
}

TEST(ChatTemplateTest, ParsedTemplateRendersManyContexts) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl =
      ChatTemplate::Parse("{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}");
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  for (int n = 0; n < 5; ++n) {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    std::string expected;
    for (int k = 0; k < n; ++k) {
      messages.push_back({{"role", "user"}, {"content", std::to_string(k)}});
      expected += "[user:" + std::to_string(k) + "]";
    }
    absl::StatusOr<std::string> out = (*tmpl)->Render({{"messages", messages}});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(*out, expected);
  }
}

TEST(ChatTemplateSourceTest, ReadsStringOrNamedTemplate) {
  absl::StatusOr<std::string> plain = ChatTemplateSource({{"chat_template", "{{ x }}"}});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(*plain, "{{ x }}");
  const nlohmann::json named = {
      {"chat_template",
       {{{"name", "default"}, {"template", "D"}}, {{"name", "tool_use"}, {"template", "T"}}}}};
  EXPECT_EQ(ChatTemplateSource(named).value(), "D");
  EXPECT_EQ(ChatTemplateSource(named, "tool_use").value(), "T");
  EXPECT_EQ(ChatTemplateSource(named, "rag").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ChatTemplateSource(nlohmann::json::object()).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sluice
