"""The OpenAI-compatible API driven by the official `openai` client."""
import json

import httpx
import openai
import pytest

from server_fixture import SluiceServer

MODEL = "sluice-tiny-code"


@pytest.fixture(scope="module")
def server(sluice_bin):
    s = SluiceServer(sluice_bin, "--max-num-seqs", "16").wait_ready()
    yield s
    assert s.stop() == 0, s.logs()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_greedy_completions_equal_golden_text(client, golden):
    for case in golden["cases"]:
        r = client.completions.create(model=MODEL, prompt=case["prompt"], max_tokens=32,
                                      temperature=0, extra_body={"ignore_eos": True})
        assert r.choices[0].text == case["greedy_text"], case["prompt"]
        assert r.choices[0].finish_reason == "length"
        assert r.usage.prompt_tokens == len(case["prompt_ids"])
        assert r.usage.completion_tokens == 32


def test_token_id_prompt_equals_text_prompt(client, golden):
    case = golden["cases"][1]
    r = client.completions.create(model=MODEL, prompt=case["prompt_ids"], max_tokens=8,
                                  temperature=0, extra_body={"ignore_eos": True})
    assert r.choices[0].text == client.completions.create(
        model=MODEL, prompt=case["prompt"], max_tokens=8, temperature=0,
        extra_body={"ignore_eos": True}).choices[0].text


def test_chat_completion(client):
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write a function that adds."}],
        max_tokens=12, temperature=0)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert isinstance(r.choices[0].message.content, str)
    assert r.usage.prompt_tokens > 5
    assert r.choices[0].finish_reason in ("stop", "length")


def test_streaming_with_usage_matches_non_streaming(client, golden):
    case = golden["cases"][2]
    chunks = list(client.completions.create(
        model=MODEL, prompt=case["prompt"], max_tokens=32, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == case["greedy_text"]
    assert chunks[-1].usage.completion_tokens == 32
    assert chunks[-1].usage.prompt_tokens == len(case["prompt_ids"])
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]


def test_chat_streaming(client):
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello"}], max_tokens=8,
        temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_n_greater_than_one_with_seed(client):
    r = client.completions.create(model=MODEL, prompt="def main():\n", max_tokens=16, n=3,
                                  temperature=1.0, seed=5, extra_body={"ignore_eos": True})
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert len({c.text for c in r.choices}) > 1
    again = client.completions.create(model=MODEL, prompt="def main():\n", max_tokens=16, n=3,
                                      temperature=1.0, seed=5, extra_body={"ignore_eos": True})
    assert [c.text for c in r.choices] == [c.text for c in again.choices]
    assert r.usage.completion_tokens == 48


def test_stop_string_ends_the_choice(client, golden):
    case = golden["cases"][0]
    full = case["greedy_text"]
    stop = full[10:14]
    r = client.completions.create(model=MODEL, prompt=case["prompt"], max_tokens=32,
                                  temperature=0, stop=[stop], extra_body={"ignore_eos": True})
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == full[:full.index(stop)]
    s = client.completions.create(model=MODEL, prompt=case["prompt"], max_tokens=32,
                                  temperature=0, stop=stop, stream=True,
                                  extra_body={"ignore_eos": True})
    assert "".join(c.choices[0].text for c in s if c.choices) == full[:full.index(stop)]


def test_logprobs(client):
    r = client.completions.create(model=MODEL, prompt="import os\n", max_tokens=4,
                                  temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs)
    for token_lp, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert token_lp <= 0.0
        assert len(top) >= 1
        assert max(top.values()) == pytest.approx(token_lp, abs=1e-5)  # greedy picks the top
    c = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=3, temperature=0, logprobs=True, top_logprobs=2)
    assert len(c.choices[0].logprobs.content[0].top_logprobs) == 2


def test_cached_tokens_reported(client):
    prompt = "class Config:\n" + "    value = 1\n" * 40
    client.completions.create(model=MODEL, prompt=prompt, max_tokens=2)
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=2)
    assert r.usage.prompt_tokens_details.cached_tokens >= 16


def test_errors_map_to_client_exceptions(client, server):
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="x", max_tokens=2, temperature=9)
    assert "temperature" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="word " * 3000, max_tokens=2)
    assert "2048" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[], max_tokens=2)


def test_raw_http_errors(server):
    base = server.url
    assert httpx.post(base + "/v1/completions", content=b"{not json").status_code == 400
    assert httpx.post(base + "/v1/completions", content=b'{"model": "x", "prompt": "\xff"}').status_code == 400
    r = httpx.get(base + "/v1/completions")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert httpx.get(base + "/nope").status_code == 404
    big = httpx.post(base + "/v1/completions", content=b"x" * (2 << 20))
    assert big.status_code == 413
    body = httpx.post(base + "/v1/completions", json={"model": MODEL, "prompt": 5}).json()
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == "prompt"


def test_operational_endpoints(server):
    base = server.url
    assert httpx.get(base + "/health").status_code == 200
    assert httpx.get(base + "/ready").json()["ready"] is True
    models = httpx.get(base + "/v1/models").json()
    assert models["data"][0]["id"] == MODEL
    assert "version" in httpx.get(base + "/version").json()
    toks = httpx.post(base + "/tokenize", json={"prompt": "def f():"}).json()["tokens"]
    assert httpx.post(base + "/detokenize", json={"tokens": toks}).json()["prompt"] == "def f():"
    metrics = httpx.get(base + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    for name in ("sluice_num_requests_waiting", "sluice_num_requests_running",
                 "sluice_kv_cache_usage_ratio", "sluice_time_to_first_token_seconds_bucket",
                 "sluice_requests_slo_met_total", "sluice_requests_finished_total"):
        assert name in metrics.text


def test_overload_is_a_rate_limit_error_for_the_client(sluice_bin):
    s = SluiceServer(sluice_bin, "--max-waiting-requests", "1", "--max-num-seqs", "1").wait_ready()
    try:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)

        def call(_):
            try:
                client.completions.create(model=MODEL, prompt="def f():", max_tokens=64,
                                          extra_body={"ignore_eos": True})
                return "ok"
            except openai.RateLimitError as e:
                assert int(e.response.headers["retry-after"]) >= 1
                assert int(e.response.headers["retry-after-ms"]) >= 100
                return "429"

        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(call, range(16)))
        assert "429" in outcomes and "ok" in outcomes
    finally:
        assert s.stop() == 0, s.logs()
