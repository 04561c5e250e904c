"""Writes cases.json: each NAME.jinja here rendered over a set of conversations by jinja2
configured as transformers configures it for apply_chat_template. Run from this folder
with jinja2 installed (pip install jinja2) after changing a template or a conversation.

The templates follow the structure of published Llama-3.1, Mistral and Qwen2.5 chat
templates (tool lists, tool calls, role checks with raise_exception) plus one with
recursive macros."""
import datetime
import glob
import json
import os

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda f: datetime.datetime.now().strftime(f)
    return env


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["c", "f"]},
            "opts": {"type": "object", "properties": {"deep": {"type": "boolean"}}}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web, ünïcode 🚀",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        "return": {"type": "string"}}},
]

CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "  You are helpful.\n"}, {"role": "user", "content": "Hi  "},
     {"role": "assistant", "content": " Hello! "},
     {"role": "user", "content": "Ünïcödé 日本語 🚀 \"quotes\" \\ backslash\ttab"}],
    [{"role": "user", "content": "Weather in Paris?"},
     {"role": "assistant", "content": "", "tool_calls": [{"id": "abcdefghi", "type": "function",
      "function": {"name": "get_weather",
                   "arguments": {"city": "Paris", "n": 1.5, "ok": True, "x": None}}}]},
     {"role": "tool", "tool_call_id": "abcdefghi", "content": "{\"temp_c\": 21}"},
     {"role": "assistant", "content": "It is 21C."}],
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    [{"role": "user", "content": "q"},
     {"role": "assistant", "content": None, "tool_calls": [
         {"id": "123456789", "function": {"name": "search", "arguments": "{\"q\": \"x\"}"}},
         {"id": "987654321", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
     {"role": "tool", "tool_call_id": "123456789", "content": "r1"},
     {"role": "tool", "tool_call_id": "987654321", "content": "r2"}],
]


def main():
    env = make_env()
    templates = {}
    for path in sorted(glob.glob("*.jinja")):
        with open(path, encoding="utf-8") as f:
            templates[os.path.splitext(path)[0]] = f.read()
    extra = {"documents": None, "bos_token": "<s>", "eos_token": "</s>",
             "date_string": "01 Jan 2025"}
    cases = []
    for name, source in templates.items():
        compiled = env.from_string(source)
        for index, messages in enumerate(CONVERSATIONS):
            for with_tools in (False, True):
                for add_generation_prompt in (False, True):
                    case = {"template": name, "conversation": index, "with_tools": with_tools,
                            "add_generation_prompt": add_generation_prompt}
                    try:
                        case["rendered"] = compiled.render(
                            messages=messages, tools=TOOLS if with_tools else None,
                            add_generation_prompt=add_generation_prompt, **extra)
                    except jinja2.exceptions.TemplateError as e:
                        case["error"] = str(e)  # raise_exception's message.
                    except Exception:  # A Python error (TypeError, ...): only failure counts.
                        case["error"] = None
                    cases.append(case)
    with open("cases.json", "w", encoding="utf-8") as f:
        json.dump({"jinja2": jinja2.__version__, "conversations": CONVERSATIONS, "tools": TOOLS, "extra_context": extra,
                   "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
