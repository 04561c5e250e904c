"""Tool calls through the official openai client: tool_choice required and named are
forced by a grammar over the tools' parameter schemas, plain and streamed (name first,
arguments in pieces), and their arguments validate; auto needs --tool-call-parser (400
without, as vLLM answers) and then parses hermes <tool_call> blocks, llama3_json and
mistral calls; parallel_tool_calls false gives one call; bad tools and choices are 400s naming the field; LangChain's
bind_tools and with_structured_output work against the server."""
import json
import os
import subprocess

import httpx
import jsonschema
import openai
import pytest

from conftest import ROOT
from server_fixture import SluiceServer

MODEL = "sluice-tiny-code"
EVAL_PYTHON = ROOT / ".venv-eval" / "bin" / "python"
WEATHER = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"]}
ADD = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
       "required": ["a", "b"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "add", "parameters": ADD}}]
SCHEMAS = {"get_weather": WEATHER, "add": ADD}
ASK = [{"role": "user", "content": "What is the weather in Paris, and what is 2 + 3?"}]


@pytest.fixture(scope="module")
def server(sluice_bin):
    s = SluiceServer(sluice_bin, "--slo-ttft-ms", "0").wait_ready()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def hermes(sluice_bin):
    s = SluiceServer(sluice_bin, "--slo-ttft-ms", "0", "--tool-call-parser", "hermes").wait_ready()
    yield s
    s.stop()


def client_of(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)


def check_calls(calls):
    assert calls, "no tool call"
    for call in calls:
        assert call.id.startswith("call_") and call.type == "function"
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def streamed_calls(stream):
    """Tool calls assembled from stream deltas as OpenAI clients assemble them."""
    calls, reasons, order = {}, [], []
    for chunk in stream:
        choice = chunk.choices[0]
        if choice.finish_reason:
            reasons.append(choice.finish_reason)
        for d in choice.delta.tool_calls or []:
            if d.index not in calls:
                assert d.id and d.function.name, "a call opens with its id and name"
                calls[d.index] = {"id": d.id, "name": d.function.name, "arguments": ""}
                order.append(("open", d.index))
            else:
                assert d.id is None and not d.function.name
            if d.function.arguments:
                calls[d.index]["arguments"] += d.function.arguments
                order.append(("args", d.index))
    return [calls[i] for i in sorted(calls)], reasons, order


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_required_gives_calls_whose_arguments_validate(server, temperature):
    client = client_of(server)
    for seed in range(6):
        r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS,
                                           tool_choice="required", max_tokens=400,
                                           temperature=temperature, seed=seed)
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", c
        assert c.message.content is None
        check_calls(c.message.tool_calls)


def test_named_function_is_the_one_called(server):
    client = client_of(server)
    for name in ("add", "get_weather"):
        r = client.chat.completions.create(
            model=MODEL, messages=ASK, tools=TOOLS, max_tokens=120, temperature=0,
            tool_choice={"type": "function", "function": {"name": name}})
        calls = r.choices[0].message.tool_calls
        assert [c.function.name for c in calls] == [name]
        check_calls(calls)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "add"}}])
def test_streamed_calls_open_with_the_name_then_the_arguments(server, choice):
    client = client_of(server)
    plain = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS,
                                           tool_choice=choice, max_tokens=200, temperature=0)
    stream = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS,
                                            tool_choice=choice, max_tokens=200, temperature=0,
                                            stream=True)
    calls, reasons, order = streamed_calls(stream)
    assert reasons == ["tool_calls"]
    # Asked for, logprobs come on the last chunk, one per generated token.
    last = list(client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS,
                                               tool_choice=choice, max_tokens=200, temperature=0,
                                               stream=True, logprobs=True,
                                               stream_options={"include_usage": True}))
    ends = [c for c in last if c.choices and c.choices[0].finish_reason]
    assert len(ends[0].choices[0].logprobs.content) == last[-1].usage.completion_tokens
    want = plain.choices[0].message.tool_calls
    assert [(c["name"], c["arguments"]) for c in calls] == \
        [(w.function.name, w.function.arguments) for w in want]
    for i in range(len(calls)):
        events = [kind for kind, idx in order if idx == i]
        assert events[0] == "open" and "args" in events


def test_auto_needs_a_parser_and_bad_choices_are_400(server):
    client = client_of(server)
    cases = [
        (dict(tools=TOOLS, tool_choice="auto"), "tool_choice"),
        (dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}),
         "tool_choice"),
        (dict(tool_choice="required"), "tool_choice"),
        (dict(tools=TOOLS, tool_choice="sometimes"), "tool_choice"),
        (dict(tools=[{"type": "function", "function": {"parameters": ADD}}]),
         "tools[0].function.name"),
        (dict(tools=[{"type": "retrieval"}]), "tools[0]"),
        (dict(tools=TOOLS, tool_choice="required", response_format={"type": "json_object"}),
         "tool_choice"),
        (dict(tools=TOOLS, parallel_tool_calls="yes"), "parallel_tool_calls"),
    ]
    for kwargs, param in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4, **kwargs)
        assert e.value.body["param"] == param, kwargs
    # Tools without a choice and without a parser: offered to the template, never parsed.
    r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, max_tokens=8)
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].finish_reason in ("stop", "length")


def test_hermes_parser_finds_calls_in_auto_and_forces_its_own_format(hermes):
    client = client_of(hermes)
    # The model decides in auto; a grammar makes it write a hermes block here, so that
    # what the parser does is what is checked.
    block = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    r = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="auto", max_tokens=200,
        extra_body={"structured_outputs": {"grammar": "root ::= \"Sure. \" " + json.dumps(block)}})
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    assert c.message.content == "Sure."
    assert [(t.function.name, json.loads(t.function.arguments)) for t in c.message.tool_calls] == \
        [("add", {"a": 2, "b": 3})]
    # Text without a block stays content.
    plain = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, max_tokens=20,
        extra_body={"structured_outputs": {"choice": ["No tools needed."]}})
    assert plain.choices[0].message.content == "No tools needed."
    assert plain.choices[0].message.tool_calls is None
    # required, in hermes blocks; one call only without parallel calls.
    for parallel in (True, False):
        r = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS,
                                           tool_choice="required", max_tokens=200,
                                           parallel_tool_calls=parallel, temperature=0)
        calls = r.choices[0].message.tool_calls
        check_calls(calls)
        if not parallel:
            assert len(calls) == 1 and r.choices[0].finish_reason == "tool_calls"


def test_hermes_auto_streams_content_live_then_each_call(hermes):
    client = client_of(hermes)
    blocks = ['<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>',
              '<tool_call>\n{"name": "get_weather", "arguments": '
              '{"city": "Paris", "unit": "celsius"}}\n</tool_call>']
    grammar = "root ::= \"Let me check that. \" " + " ".join(json.dumps(b) for b in blocks)
    stream = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="auto", max_tokens=200, stream=True,
        extra_body={"structured_outputs": {"grammar": grammar}})
    events, content, calls, reasons = [], "", {}, []
    for chunk in stream:
        choice = chunk.choices[0]
        if choice.delta.content:
            content += choice.delta.content
            events.append("content")
        for d in choice.delta.tool_calls or []:
            calls.setdefault(d.index, {"name": d.function.name, "arguments": ""})
            calls[d.index]["arguments"] += d.function.arguments or ""
            events.append(f"call{d.index}")
        if choice.finish_reason:
            reasons.append(choice.finish_reason)
    # The sentence streams token by token before any call; no markup leaks into it.
    assert content == "Let me check that. "
    assert events.count("content") > 2, events
    assert events.index("call0") > max(i for i, e in enumerate(events) if e == "content")
    assert events.index("call1") > events.index("call0")
    assert [(calls[i]["name"], json.loads(calls[i]["arguments"])) for i in sorted(calls)] == \
        [("add", {"a": 2, "b": 3}), ("get_weather", {"city": "Paris", "unit": "celsius"})]
    assert reasons == ["tool_calls"]
    # A plain answer under auto streams as it comes, and a tail that looks like the start
    # of a call is content once the turn ends without one.
    stream = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, max_tokens=40, stream=True,
        extra_body={"structured_outputs": {"choice": ["No tools are needed here <tool_c"]}})
    pieces = [c.choices[0].delta.content for c in stream if c.choices[0].delta.content]
    assert "".join(pieces) == "No tools are needed here <tool_c"
    assert len(pieces) > 2, pieces


def test_langchain_bind_tools_and_structured_output(server, tmp_path):
    if not EVAL_PYTHON.exists():
        if os.environ.get("SLUICE_REQUIRE_LM_EVAL") == "1":
            pytest.fail(f"{EVAL_PYTHON} is missing: scripts/install_eval_tools.sh makes it")
        pytest.skip(f"LangChain is not installed ({EVAL_PYTHON}); "
                    "scripts/install_eval_tools.sh installs it")
    script = tmp_path / "lc.py"
    script.write_text(f'''
import json, sys
from pydantic import BaseModel, Field
from langchain_openai import ChatOpenAI
from langchain_core.tools import tool

@tool
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b

class Person(BaseModel):
    name: str = Field(max_length=16)
    age: int = Field(ge=0, le=120)

llm = ChatOpenAI(model="{MODEL}", base_url="{server.url}/v1", api_key="none",
                 temperature=0, max_tokens=120, max_retries=0)
msg = llm.bind_tools([add], tool_choice="add").invoke("What is 2 + 3?")
person = llm.with_structured_output(Person, method="json_schema").invoke("Who are you?")
print(json.dumps({{"calls": msg.tool_calls, "person": person.model_dump()}}))
''')
    run = subprocess.run([str(EVAL_PYTHON), str(script)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert [c["name"] for c in out["calls"]] == ["add"]
    assert isinstance(out["calls"][0]["args"]["a"], int)
    assert 0 <= out["person"]["age"] <= 120 and len(out["person"]["name"]) <= 16


@pytest.mark.parametrize("parser, written, calls_key", [
    ("llama3_json", '{"name": "add", "parameters": {"a": 2, "b": 3}}; '
                    '{"name": "get_weather", "parameters": {"city": "Oslo", "unit": "celsius"}}',
     "parameters"),
    ("mistral", '[TOOL_CALLS][{"name": "add", "arguments": {"a": 2, "b": 3}}, '
                '{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}]',
     "arguments"),
])
def test_llama3_json_and_mistral_parsers(sluice_bin, parser, written, calls_key):
    s = SluiceServer(sluice_bin, "--slo-ttft-ms", "0", "--tool-call-parser", parser).wait_ready()
    try:
        client = client_of(s)
        # auto: a grammar writes the format, the parser finds both calls.
        r = client.chat.completions.create(
            model=MODEL, messages=ASK, tools=TOOLS, tool_choice="auto", max_tokens=200,
            extra_body={"structured_outputs": {"grammar": "root ::= " + json.dumps(written)}})
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", c
        assert [(t.function.name, json.loads(t.function.arguments)) for t in c.message.tool_calls] == [
            ("add", {"a": 2, "b": 3}), ("get_weather", {"city": "Oslo", "unit": "celsius"})]
        # required: forced in the parser's own format, and parsed back.
        forced = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS,
                                                tool_choice="required", max_tokens=400,
                                                temperature=0)
        assert forced.choices[0].finish_reason == "tool_calls"
        check_calls(forced.choices[0].message.tool_calls)
    finally:
        s.stop()
