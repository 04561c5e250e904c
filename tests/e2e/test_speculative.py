"""`sluice serve --speculative-method ngram` and `draft`, driven by the official `openai`
client: greedy completions, streams and logprobs equal plain decoding's on a prompt that
repeats itself, the drafts show in the Prometheus counters, `"speculative": false` is
honoured and a wrong type refused, and flags that cannot work are refused naming them."""
import re
import subprocess
import time

import httpx
import openai
import pytest
from conftest import ROOT
from server_fixture import SluiceServer, free_port

BODY = ("def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    result = a + b\n"
        "    return result\n")
REPEATS = BODY + "\n\n" + BODY + "\n\n" + "def add(a, b):\n"
PROMPTS = [REPEATS, "def fibonacci(n):", "import numpy as np\n"]


def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def outputs(server, **extra):
    c = client(server)
    done = []
    for p in PROMPTS:
        r = c.completions.create(model="sluice-tiny-code", prompt=p, max_tokens=48, temperature=0,
                                 logprobs=2, extra_body=extra or None)
        done.append((r.choices[0].text, r.choices[0].logprobs.token_logprobs,
                     r.usage.completion_tokens))
    # A stop string inside the tokens one step kept ends the tokens there too: the
    # usage and logprobs count what plain decoding counts.
    r = c.completions.create(model="sluice-tiny-code", prompt=REPEATS, max_tokens=48,
                             temperature=0, logprobs=1, stop=["result = a"],
                             extra_body=extra or None)
    assert r.choices[0].finish_reason == "stop"
    done.append((r.choices[0].text, r.choices[0].logprobs.token_logprobs,
                 r.usage.completion_tokens))
    stream = c.completions.create(model="sluice-tiny-code", prompt=REPEATS, max_tokens=40,
                                  temperature=0, stream=True, stop=["return result\n\n\n"],
                                  extra_body=extra or None)
    done.append("".join(ch.choices[0].text for ch in stream if ch.choices))
    return done


def counters(server):
    # A stop string ends a stream before the engine hears of the abort: wait until the
    # engine has no request left, so that its counters are final.
    deadline = time.time() + 10
    while True:
        text = httpx.get(server.url + "/metrics", timeout=10).text
        if re.search(r"^sluice_num_requests_running 0$", text, re.M) or time.time() > deadline:
            break
        time.sleep(0.05)
    got = {}
    for name in ("num_drafts", "num_draft_tokens", "num_accepted_tokens"):
        m = re.search(rf"^sluice_spec_decode_{name}_total (\S+)$", text, re.M)
        assert m, text
        got[name] = float(m.group(1))
    got["per_pos"] = [float(v) for v in re.findall(
        r'^sluice_spec_decode_num_accepted_tokens_per_pos_total\{position="\d+"\} (\S+)$', text,
        re.M)]
    return got


@pytest.fixture(scope="module")
def plain(sluice_bin):
    server = SluiceServer(sluice_bin).wait_ready()
    try:
        yield outputs(server)
    finally:
        assert server.stop() == 0, server.logs()


def expect_same(got, want):
    for (text, lps, n), (want_text, want_lps, want_n) in zip(got[:-1], want[:-1]):
        assert text == want_text
        assert n == want_n
        assert max(abs(a - b) for a, b in zip(lps, want_lps)) < 1e-3
    assert got[-1] == want[-1]


def test_ngram_drafts_give_plain_decodings_outputs(sluice_bin, plain):
    server = SluiceServer(sluice_bin, "--speculative-method", "ngram",
                          "--num-speculative-tokens", "4").wait_ready()
    try:
        expect_same(outputs(server), plain)
        c = counters(server)
        assert c["num_drafts"] > 0 and c["num_accepted_tokens"] > 0, c
        assert c["num_accepted_tokens"] <= c["num_draft_tokens"]
        assert len(c["per_pos"]) == 4 and sum(c["per_pos"]) == c["num_accepted_tokens"], c
        # Opting out: the same outputs, and not one more draft.
        expect_same(outputs(server, speculative=False), plain)
        assert counters(server)["num_drafts"] == c["num_drafts"]
        bad = httpx.post(server.url + "/v1/completions", timeout=30, json={
            "model": "sluice-tiny-code", "prompt": "x", "speculative": "no"})
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "speculative"
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200
    finally:
        assert server.stop() == 0, server.logs()


def test_a_draft_model_gives_plain_decodings_outputs(sluice_bin, plain):
    # The tiny model drafting for itself: nearly every draft is kept.
    server = SluiceServer(sluice_bin, "--speculative-method", "draft", "--draft-model",
                          str(ROOT / "models" / "sluice-tiny-code")).wait_ready()
    try:
        expect_same(outputs(server), plain)
        c = counters(server)
        assert c["num_accepted_tokens"] > 0.9 * c["num_draft_tokens"] > 0, c
    finally:
        assert server.stop() == 0, server.logs()


@pytest.mark.parametrize("flags,said", [
    (["--speculative-method", "draft"], "--speculative-method draft needs --draft-model DIR"),
    (["--draft-model", "/nonexistent"], "--draft-model needs --speculative-method draft"),
    (["--speculative-method", "ngram", "--ngram-min", "5", "--ngram-max", "2"],
     "--ngram-min 5 is more than --ngram-max 2"),
    (["--speculative-method", "draft", "--draft-model", "/nonexistent/dir"], "/nonexistent/dir"),
    (["--speculative-method", "medusa"], "--speculative-method"),
])
def test_flags_that_cannot_work_are_refused_naming_them(sluice_bin, flags, said):
    r = subprocess.run([sluice_bin, "serve", "--port", str(free_port()), "--grpc-port", "-1",
                        *flags], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert said in r.stderr + r.stdout, r.stderr + r.stdout
