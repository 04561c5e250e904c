"""/v1/responses through the official openai client: plain and streamed answers equal the
chat completion of the same conversation, the streamed events come in the documented
order, length limits end 'incomplete', and what a stateless server cannot do is a 400
naming the field. Function tools: required and named calls come back as function_call items
whose arguments validate, plain and streamed (output_item.added, arguments deltas, done), and
a function_call_output continues the conversation."""
import json

import httpx
import jsonschema
import openai
import pytest

from server_fixture import SluiceServer

MODEL = "sluice-tiny-code"
ASK = "Write a Python function that reverses a string."


@pytest.fixture(scope="module")
def server(sluice_bin):
    s = SluiceServer(sluice_bin, "--slo-ttft-ms", "0").wait_ready()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)


def chat_text(client, messages, max_tokens):
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=max_tokens,
                                       temperature=0)
    return r.choices[0].message.content, r.usage


def test_plain_response_equals_the_chat_completion(client):
    r = client.responses.create(model=MODEL, input=ASK, max_output_tokens=24, temperature=0)
    text, usage = chat_text(client, [{"role": "user", "content": ASK}], 24)
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.output_text == text and text
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.usage.input_tokens == usage.prompt_tokens
    assert r.usage.output_tokens == usage.completion_tokens
    assert r.usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert r.status == ("incomplete" if usage.completion_tokens == 24 else "completed")
    assert r.store is False and r.max_output_tokens == 24


def test_instructions_and_message_items(client):
    items = [{"role": "user", "content": [{"type": "input_text", "text": "Sort a list."}]},
             {"role": "assistant", "content": [{"type": "output_text", "text": "sorted(xs)"}]},
             {"type": "message", "role": "user", "content": "Now in place."}]
    r = client.responses.create(model=MODEL, input=items, instructions="Answer in code.",
                                max_output_tokens=16, temperature=0, metadata={"run": "e2e"})
    text, usage = chat_text(client, [{"role": "system", "content": "Answer in code."},
                                     {"role": "user", "content": "Sort a list."},
                                     {"role": "assistant", "content": "sorted(xs)"},
                                     {"role": "user", "content": "Now in place."}], 16)
    assert r.output_text == text
    assert r.usage.input_tokens == usage.prompt_tokens
    assert r.instructions == "Answer in code." and r.metadata == {"run": "e2e"}


def test_streamed_events_in_the_documented_order(client):
    plain = client.responses.create(model=MODEL, input=ASK, max_output_tokens=20, temperature=0)
    events = list(client.responses.create(model=MODEL, input=ASK, max_output_tokens=20,
                                          temperature=0, stream=True))
    types = [e.type for e in events]
    final = "response.incomplete" if plain.status == "incomplete" else "response.completed"
    head = ["response.created", "response.in_progress", "response.output_item.added",
            "response.content_part.added"]
    tail = ["response.output_text.done", "response.content_part.done",
            "response.output_item.done", final]
    assert types[:4] == head and types[-4:] == tail
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) == len(types) - 8 and len(deltas) >= 2
    assert "".join(deltas) == plain.output_text == events[-4].text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1].response
    assert done.output_text == plain.output_text
    assert done.usage.output_tokens == plain.usage.output_tokens
    assert events[0].response.status == "in_progress"


def test_max_output_tokens_ends_incomplete(client):
    r = client.responses.create(model=MODEL, input=ASK, max_output_tokens=2, temperature=0)
    assert r.status == "incomplete"
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 2


@pytest.mark.parametrize("extra, param", [
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"store": True}, "store"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {}, "color": 1}]},
     "tools[0].color"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {}}],
      "tool_choice": {"type": "function", "name": "g"}}, "tool_choice"),
    ({"tool_choice": 3}, "tool_choice"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"temperature": 5}, "temperature"),
    ({"reasoning": {"effort": "high"}}, "reasoning"),
    ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
    ({"text": {"verbosity": "low"}}, "text.verbosity"),
    ({"best_of": 2}, "best_of"),
    ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": 3, "arguments": "{}"}]},
     "input[0].name"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0].type"),
    ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
    ({"input": []}, "input"),
    ({"input": 7}, "input"),
])
def test_what_a_stateless_server_cannot_do_is_400_naming_it(server, extra, param):
    r = httpx.post(server.url + "/v1/responses", timeout=30,
                   json={"model": MODEL, "input": ASK, "max_output_tokens": 4, **extra})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_store_false_and_unknown_model(client, server):
    r = client.responses.create(model=MODEL, input="x = ", max_output_tokens=2, store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-4o", input="hi", max_output_tokens=2)
    assert httpx.get(server.url + "/v1/responses", timeout=10).status_code == 405


def test_text_format_constrains_the_output(client):
    import json
    obj = client.responses.create(model=MODEL, input="A JSON object please.", max_output_tokens=64,
                                  text={"format": {"type": "json_object"}}, temperature=0)
    if obj.status == "completed":
        assert isinstance(json.loads(obj.output_text), dict)
    assert obj.text.format.type == "json_object"
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0,
                                                     "maximum": 9}}, "required": ["n"]}
    r = client.responses.create(model=MODEL, input="A number.", max_output_tokens=32,
                                temperature=0, text={"format": {"type": "json_schema",
                                                                "name": "num", "schema": schema}})
    assert r.status == "completed"
    assert 0 <= json.loads(r.output_text)["n"] <= 9
    assert r.text.format.type == "json_schema"


WEATHER = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"]}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather now",
          "parameters": WEATHER, "strict": True}]


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "get_weather"}])
def test_function_calls_are_items_whose_arguments_validate(client, choice):
    r = client.responses.create(model=MODEL, input="Weather in Paris?", tools=TOOLS,
                                tool_choice=choice, max_output_tokens=80, temperature=0)
    assert r.status == "completed"
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert calls[0].call_id.startswith("call_") and calls[0].id.startswith("fc_")
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER)
    assert r.tools[0].name == "get_weather"
    # The same, streamed: the call's item opens, its arguments come in pieces, then done.
    events = list(client.responses.create(model=MODEL, input="Weather in Paris?", tools=TOOLS,
                                          tool_choice=choice, max_output_tokens=80,
                                          temperature=0, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    added = types.index("response.output_item.added")
    assert events[added].item.type == "function_call" and events[added].item.arguments == ""
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert "".join(deltas) == done.arguments
    assert json.loads(done.arguments) == json.loads(calls[0].arguments)
    final = events[-1].response
    assert [o.type for o in final.output] == ["function_call"]
    assert "response.output_text.delta" not in types


def test_function_call_output_continues_the_conversation(client):
    first = client.responses.create(model=MODEL, input="Weather in Paris?", tools=TOOLS,
                                    tool_choice="required", max_output_tokens=80, temperature=0)
    call = next(o for o in first.output if o.type == "function_call")
    follow = [{"role": "user", "content": "Weather in Paris?"},
              {"type": "function_call", "call_id": call.call_id, "name": call.name,
               "arguments": call.arguments},
              {"type": "function_call_output", "call_id": call.call_id,
               "output": json.dumps({"temperature": 21})}]
    r = client.responses.create(model=MODEL, input=follow, tools=TOOLS, tool_choice="none",
                                max_output_tokens=16, temperature=0)
    assert r.status in ("completed", "incomplete")
    assert r.output[0].type == "message" and r.output_text
    # The same conversation through chat completions renders the same prompt.
    chat = client.chat.completions.create(
        model=MODEL, max_tokens=16, temperature=0,
        tools=[{"type": "function", "function": {"name": "get_weather", "description":
                                                 "Weather now", "parameters": WEATHER}}],
        tool_choice="none",
        messages=[{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"id": call.call_id, "type": "function",
                       "function": {"name": call.name, "arguments": call.arguments}}]},
                  {"role": "tool", "tool_call_id": call.call_id,
                   "content": json.dumps({"temperature": 21})}])
    assert r.usage.input_tokens == chat.usage.prompt_tokens
    assert r.output_text == chat.choices[0].message.content
