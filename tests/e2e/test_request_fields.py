"""Request fields vLLM clients send, through the official openai client: each one takes
effect (asserted on the answer) or is refused with a 400 naming it; none is accepted and
ignored."""
import shutil
import subprocess

import httpx
import openai
import pytest

from server_fixture import SluiceServer

MODEL = "sluice-tiny-code"
PROMPT = "def fibonacci(n):\n"


@pytest.fixture(scope="module")
def server(sluice_bin):
    s = SluiceServer(sluice_bin, "--slo-ttft-ms", "0").wait_ready()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)


def greedy(client, **kw):
    extra = kw.pop("extra_body", {})
    return client.completions.create(model=MODEL, prompt=kw.pop("prompt", PROMPT),
                                     max_tokens=kw.pop("max_tokens", 12), temperature=0,
                                     extra_body={"ignore_eos": True, **extra}, **kw)


def ids_of(choice):
    """Token ids of a choice asked with return_tokens_as_token_ids."""
    return [int(t.split(":", 1)[1]) for t in choice.logprobs.tokens]


def test_return_tokens_as_token_ids_names_tokens_by_id(client):
    plain = greedy(client, logprobs=1).choices[0]
    as_ids = greedy(client, logprobs=1, extra_body={"return_tokens_as_token_ids": True}).choices[0]
    assert all(t.startswith("token_id:") for t in as_ids.logprobs.tokens)
    assert as_ids.text == plain.text
    assert as_ids.logprobs.token_logprobs == plain.logprobs.token_logprobs
    assert as_ids.logprobs.text_offset == plain.logprobs.text_offset  # on the text itself


def test_logit_bias_takes_effect_and_is_checked(client):
    base = ids_of(greedy(client, logprobs=0, extra_body={"return_tokens_as_token_ids": True})
                  .choices[0])
    forced = 1234
    pushed = greedy(client, logprobs=0, logit_bias={str(forced): 100},
                    extra_body={"return_tokens_as_token_ids": True}).choices[0]
    assert ids_of(pushed) == [forced] * len(base)
    banned = greedy(client, logprobs=0, logit_bias={str(base[0]): -100},
                    extra_body={"return_tokens_as_token_ids": True}).choices[0]
    assert ids_of(banned)[0] != base[0]
    for bias, what in (({"999999": 5}, "outside the vocabulary"), ({"7": 150}, "-100 and 100"),
                       ({"x": 1}, "token ids")):
        with pytest.raises(openai.BadRequestError) as e:
            greedy(client, logit_bias=bias)
        assert e.value.body["param"] == "logit_bias", e.value.body
        assert what in e.value.body["message"], e.value.body


def test_allowed_token_ids_and_bad_words(client):
    allowed = [100, 200, 300]
    got = greedy(client, logprobs=0, extra_body={"allowed_token_ids": allowed,
                                                  "return_tokens_as_token_ids": True}).choices[0]
    assert set(ids_of(got)) <= set(allowed)
    text = greedy(client).choices[0].text
    word = text.split()[0]
    assert word
    without = greedy(client, extra_body={"bad_words": [word]}).choices[0].text
    assert word not in without.split()[:1]
    with pytest.raises(openai.BadRequestError) as e:
        greedy(client, extra_body={"allowed_token_ids": [5, 10**6]})
    assert e.value.body["param"] == "allowed_token_ids"


def test_stop_reason_include_stop_str_and_min_tokens(client):
    text = greedy(client, max_tokens=24).choices[0].text
    stop = text[8:12]
    assert len(stop) == 4 and stop not in text[:8]
    r = greedy(client, max_tokens=24, stop=[stop]).choices[0]
    assert r.finish_reason == "stop"
    assert r.model_extra["stop_reason"] == stop
    assert r.text == text[:text.index(stop)]
    kept = greedy(client, max_tokens=24, stop=[stop],
                  extra_body={"include_stop_str_in_output": True}).choices[0]
    assert kept.text == text[:text.index(stop) + len(stop)]
    assert kept.model_extra["stop_reason"] == stop
    assert greedy(client).choices[0].model_extra["stop_reason"] is None  # length
    # A stop token: its id is the stop reason; min_tokens holds it off.
    ids = ids_of(greedy(client, logprobs=0, max_tokens=6,
                        extra_body={"return_tokens_as_token_ids": True}).choices[0])
    token = ids[1]
    first = ids.index(token)  # where greedy decoding first reaches it
    by_token = greedy(client, max_tokens=20, extra_body={"stop_token_ids": [token]}).choices[0]
    assert by_token.finish_reason == "stop"
    assert by_token.model_extra["stop_reason"] == token
    late = greedy(client, max_tokens=20, logprobs=0,
                  extra_body={"stop_token_ids": [token], "min_tokens": first + 4,
                              "return_tokens_as_token_ids": True}).choices[0]
    got = ids_of(late)
    assert len(got) >= first + 4 and token not in got[:first + 3], got
    with pytest.raises(openai.BadRequestError) as e:
        greedy(client, max_tokens=4, extra_body={"min_tokens": 5})
    assert e.value.body["param"] == "min_tokens"


def test_unsupported_fields_answer_400_naming_them(client):
    cases = [({"suffix": "return x"}, "suffix"), ({"best_of": 3}, "best_of"),
             ({"frobnicate": True}, "frobnicate"), ({"messages": []}, "messages")]
    for extra, field in cases:
        with pytest.raises(openai.BadRequestError) as e:
            greedy(client, extra_body=extra)
        assert e.value.body["param"] == field, e.value.body
    assert greedy(client, extra_body={"best_of": 1}).choices[0].text  # best_of = n is n
    assert greedy(client, user="someone").choices[0].text  # documented as accepted
    chat = dict(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    for extra, field in (({"top_logprobs": 2}, "top_logprobs"),
                         ({"response_format": {"type": "xml"}}, "response_format.type"),
                         ({"tool_choice": "required"}, "tool_choice"),  # no tools
                         ({"prompt": "x"}, "prompt")):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(**chat, extra_body=extra)
        assert e.value.body["param"] == field, e.value.body
    assert client.chat.completions.create(**chat, response_format={"type": "text"}).choices


def test_max_tokens_beyond_the_context_is_400_naming_both_numbers(client):
    with pytest.raises(openai.BadRequestError) as e:
        greedy(client, max_tokens=5000)
    body = e.value.body
    assert body["param"] == "max_tokens"
    assert "2048" in body["message"] and "5000" in body["message"], body
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                       max_completion_tokens=4096)
    assert e.value.body["param"] == "max_completion_tokens"
    # Without max_tokens a chat answer is capped by the context, not refused.
    assert client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], temperature=0,
        extra_body={"max_tokens": None}, stop=["\n"]).choices


def test_a_tool_call_turn_with_null_content_renders(client):
    messages = [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "4"},
    ]
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    assert r.choices[0].message.content is not None


def test_models_retrieve(client, server):
    model = client.models.retrieve(MODEL)
    assert model.id == MODEL and model.model_extra["max_model_len"] == 2048
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    assert httpx.post(server.url + f"/v1/models/{MODEL}").status_code == 405


def test_tokenizer_info_and_tokenize_messages(server):
    info = httpx.get(server.url + "/tokenizer_info", timeout=10).json()
    assert info["vocab_size"] == 4096 and info["model_max_length"] == 2048
    assert info["eos_token"] and info["chat_template"]
    messages = [{"role": "user", "content": "Reverse a list."}]
    chat = httpx.post(server.url + "/tokenize", timeout=10,
                      json={"model": MODEL, "messages": messages,
                            "add_generation_prompt": True}).json()
    # The same tokens a chat completion's prompt has.
    r = httpx.post(server.url + "/v1/chat/completions", timeout=30,
                   json={"model": MODEL, "messages": messages, "max_tokens": 1}).json()
    assert chat["count"] == r["usage"]["prompt_tokens"] == len(chat["tokens"])
    bad = httpx.post(server.url + "/tokenize", json={"messages": "hi"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"
    typed = httpx.post(server.url + "/tokenize", json={"prompt": "x", "add_special_tokens": 3},
                       timeout=10)
    assert typed.status_code == 400 and typed.json()["error"]["param"] == "add_special_tokens"


def test_metrics_compat_exports_the_vllm_names(sluice_bin, tmp_path):
    s = SluiceServer(sluice_bin, "--metrics-compat", "vllm").wait_ready()
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="none", max_retries=0)
        c.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4)
        text = httpx.get(s.url + "/metrics", timeout=10).text
        for name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                     "vllm:kv_cache_usage_perc", "vllm:prompt_tokens_total",
                     "vllm:generation_tokens_total", "vllm:prefix_cache_queries_total",
                     "vllm:prefix_cache_hits_total", "vllm:time_to_first_token_seconds_bucket",
                     "vllm:inter_token_latency_seconds_bucket",
                     "vllm:e2e_request_latency_seconds_bucket"):
            assert f'{name}{{' in text, name
        assert f'vllm:generation_tokens_total{{model_name="{MODEL}"}} 4' in text
        assert 'vllm:request_success_total{model_name="sluice-tiny-code"} 1' in text
        (tmp_path / "m.txt").write_text(text)
        promtool = shutil.which("promtool")
        if promtool:
            r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                               text=True)
            # promtool's naming lint flags the colon in every vllm: name (vLLM's own scrape
            # gets the same); apart from that the exposition must be clean.
            problems = [line for line in (r.stdout + r.stderr).splitlines()
                        if line and "should not contain ':'" not in line]
            assert not problems, problems
    finally:
        s.stop()


def preflight(url, origin, method="POST", path="/v1/chat/completions"):
    return httpx.options(url + path, timeout=10, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type"})


def test_cors_is_off_by_default_but_preflight_is_answered(server):
    r = preflight(server.url, "https://app.example")
    assert r.status_code == 204
    assert "POST" in r.headers["allow"] and "OPTIONS" in r.headers["allow"]
    assert "access-control-allow-origin" not in r.headers
    plain = httpx.get(server.url + "/v1/models", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in plain.headers
    assert httpx.options(server.url + "/nowhere", timeout=10).status_code == 404


def test_allowed_origins_lets_those_browsers_call(sluice_bin):
    s = SluiceServer(sluice_bin, "--allowed-origins",
                     "https://app.example, http://localhost:3000").wait_ready()
    try:
        r = preflight(s.url, "https://app.example")
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "POST" in r.headers["access-control-allow-methods"]
        assert r.headers["access-control-allow-headers"] == "authorization,content-type"
        assert int(r.headers["access-control-max-age"]) > 0
        assert "origin" in r.headers["vary"].lower()
        other = preflight(s.url, "https://evil.example")
        assert other.status_code == 204 and "access-control-allow-origin" not in other.headers
        wrong_method = preflight(s.url, "https://app.example", method="DELETE")
        assert "access-control-allow-methods" not in wrong_method.headers
        body = {"model": MODEL, "prompt": "x", "max_tokens": 2}
        call = httpx.post(s.url + "/v1/completions", json=body, timeout=30,
                          headers={"Origin": "http://localhost:3000"})
        assert call.status_code == 200
        assert call.headers["access-control-allow-origin"] == "http://localhost:3000"
        with httpx.stream("POST", s.url + "/v1/completions", json={**body, "stream": True},
                          headers={"Origin": "https://app.example"}, timeout=30) as st:
            assert st.headers["access-control-allow-origin"] == "https://app.example"
            assert b"[DONE]" in b"".join(st.iter_bytes())
        refused = httpx.post(s.url + "/v1/completions", json={**body, "n": 99}, timeout=30,
                             headers={"Origin": "https://app.example"})
        assert refused.status_code == 400  # errors carry the permission too, to be readable
        assert refused.headers["access-control-allow-origin"] == "https://app.example"
        models = httpx.get(s.url + "/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in models.headers
    finally:
        s.stop()
    star = SluiceServer(sluice_bin, "--allowed-origins", "*").wait_ready()
    try:
        assert preflight(star.url, "https://any.example").headers[
            "access-control-allow-origin"] == "*"
    finally:
        star.stop()


def test_a_malformed_allowed_origin_stops_the_server_naming_it(sluice_bin):
    run = subprocess.run([sluice_bin, "serve", "--port", "0", "--allowed-origins",
                          "https://app.example/path"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2
    assert "https://app.example/path" in run.stdout + run.stderr
