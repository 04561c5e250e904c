"""/v1/responses through the official openai client: plain and streamed answers equal the
chat completion of the same conversation, the streamed events come in the documented
order, length limits end 'incomplete', and what a stateless server cannot do is a 400
naming the field."""
import httpx
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
    ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, "tools"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"temperature": 5}, "temperature"),
    ({"reasoning": {"effort": "high"}}, "reasoning"),
    ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
    ({"text": {"verbosity": "low"}}, "text.verbosity"),
    ({"best_of": 2}, "best_of"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": "1"}]},
     "input[0].type"),
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
