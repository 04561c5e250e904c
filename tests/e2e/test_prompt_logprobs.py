"""Prompt logprobs: the scores of a prompt's own tokens, computed in its forward pass.
lm-evaluation-harness's loglikelihood requests (echo + logprobs + token-id prompts), run
by the real lm_eval CLI and by hand, equal transformers' log-likelihoods (reference.json,
made by lm_eval/make_reference.py); vLLM's prompt_logprobs, echo with max_tokens 0 and
echo with stream; a prefix-cache hit loses nothing; bad values are 400s naming the field."""
import json
import os
import pathlib
import subprocess
import sys

import httpx
import openai
import pytest

from conftest import ROOT
from server_fixture import SluiceServer

MODEL = "sluice-tiny-code"
HERE = pathlib.Path(__file__).parent / "lm_eval"
REFERENCE = json.loads((HERE / "reference.json").read_text())["pairs"]
TOLERANCE = 2e-3  # nats, on each pair's summed log-likelihood
EVAL_PYTHON = ROOT / ".venv-eval" / "bin" / "python"


@pytest.fixture(scope="module")
def server(sluice_bin):
    s = SluiceServer(sluice_bin, "--slo-ttft-ms", "0").wait_ready()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)


def post(server, body, path="/v1/completions"):
    return httpx.post(server.url + path, json={"model": MODEL, **body}, timeout=60)


def test_lm_eval_loglikelihoods_equal_transformers(server, tmp_path):
    if not EVAL_PYTHON.exists():
        if os.environ.get("SLUICE_REQUIRE_LM_EVAL") == "1":
            pytest.fail(f"{EVAL_PYTHON} is missing: scripts/install_eval_tools.sh makes it")
        pytest.skip(f"lm-evaluation-harness is not installed ({EVAL_PYTHON}); "
                    "scripts/install_eval_tools.sh installs it")
    # A local multiple-choice task over items.jsonl: no download from the hub.
    task = tmp_path / "tasks"
    task.mkdir()
    (task / "sluice_mc.yaml").write_text(
        "task: sluice_mc\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {HERE / 'items.jsonl'}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{context}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{label}}"\n'
        "metric_list:\n  - metric: acc\n")
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(
        [str(EVAL_PYTHON), "-m", "lm_eval", "--model", "local-completions", "--model_args",
         f"model={MODEL},base_url={server.url}/v1/completions,tokenizer_backend=remote,"
         "num_concurrent=1,max_retries=1,tokenized_requests=True",
         "--include_path", str(task), "--tasks", "sluice_mc", "--output_path", str(out),
         "--log_samples"],
        env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    reference = {(p["context"], p["continuation"]): p for p in REFERENCE}
    samples = list(out.rglob("samples_sluice_mc_*.jsonl"))
    assert len(samples) == 1, run.stderr[-2000:]
    checked = 0
    for line in samples[0].read_text().splitlines():
        sample = json.loads(line)
        for args, resp in zip(sample["arguments"].values(), sample["resps"]):
            want = reference[(args["arg_0"], args["arg_1"])]
            loglikelihood, greedy = resp[0]
            assert abs(float(loglikelihood) - want["loglikelihood"]) <= TOLERANCE, (args, resp)
            assert (greedy == "True") == want["is_greedy"], (args, resp)
            checked += 1
    assert checked == len(REFERENCE)
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    print(f"lm_eval acc {results['results']['sluice_mc']['acc,none']} over {checked} pairs")


def test_echo_logprobs_score_the_prompt_as_lm_eval_reads_them(server):
    # lm-eval's request: the pairs as token ids, in one batch, echo + logprobs 1 +
    # max_tokens 1; the continuation's score is token_logprobs[ctxlen:-1].
    prompts = [p["context_ids"] + p["continuation_ids"] for p in REFERENCE]
    r = post(server, {"prompt": prompts, "max_tokens": 1, "logprobs": 1, "echo": True,
                      "temperature": 0, "seed": 1234})
    assert r.status_code == 200, r.text
    choices = sorted(r.json()["choices"], key=lambda c: c["index"])
    assert len(choices) == len(REFERENCE)
    for pair, ids, choice in zip(REFERENCE, prompts, choices):
        lp = choice["logprobs"]
        assert len(lp["tokens"]) == len(ids) + 1  # the prompt, then the one new token
        assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
        assert all(isinstance(x, float) for x in lp["token_logprobs"][1:])
        ctxlen = len(pair["context_ids"])
        got = sum(lp["token_logprobs"][ctxlen:-1])
        assert abs(got - pair["loglikelihood"]) <= TOLERANCE, pair["continuation"]
        greedy = all(t == max(top.values()) for t, top in
                     zip(lp["token_logprobs"][ctxlen:-1], lp["top_logprobs"][ctxlen:-1]))
        assert greedy == pair["is_greedy"], pair["continuation"]
        # Offsets on the echoed text: each token starts where the text before it ends.
        text = choice["text"]
        for i, token in enumerate(lp["tokens"]):
            assert text[lp["text_offset"][i]:].startswith(token), (i, token)


def test_echo_with_max_tokens_0_scores_the_prompt_alone(client):
    prompt = "def add(a, b):\n    return a + b\n"
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=0, echo=True,
                                  logprobs=2)
    c = r.choices[0]
    assert c.text == prompt
    assert c.finish_reason == "length"
    assert r.usage.completion_tokens == 0
    assert len(c.logprobs.tokens) == r.usage.prompt_tokens
    assert c.logprobs.token_logprobs[0] is None
    assert "".join(c.logprobs.tokens) == prompt
    assert all(len(top) == 2 for top in c.logprobs.top_logprobs[1:])
    # Without logprobs the answer is the prompt, no logprobs.
    plain = client.completions.create(model=MODEL, prompt=prompt, max_tokens=0, echo=True)
    assert plain.choices[0].text == prompt and plain.choices[0].logprobs is None
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt=prompt, max_tokens=0)
    assert e.value.body["param"] == "max_tokens"


def test_vllm_prompt_logprobs_on_completions_and_chat(client, server):
    prompt = "import numpy as np\n"
    echo = client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, echo=True,
                                     logprobs=0, extra_body={"return_tokens_as_token_ids": True})
    ids = [int(t.split(":")[1]) for t in echo.choices[0].logprobs.tokens]
    scores = echo.choices[0].logprobs.token_logprobs
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=3, temperature=0,
                                  extra_body={"prompt_logprobs": 2})
    pl = r.choices[0].model_extra["prompt_logprobs"]
    assert len(pl) == r.usage.prompt_tokens == len(ids) - 1
    assert pl[0] is None
    for i, entry in enumerate(pl[1:], start=1):
        assert str(ids[i]) in entry, "the prompt token itself is always there"
        assert 2 <= len(entry) <= 3
        me = entry[str(ids[i])]
        assert abs(me["logprob"] - scores[i]) < 1e-5
        assert sorted(v["rank"] for v in entry.values())[:2] == [1, 2]
        assert len(entry) == 2 or me["rank"] > 2  # a third entry only for a token outside the top
        assert all(v["logprob"] <= 0 and isinstance(v["decoded_token"], str)
                   for v in entry.values())
    assert r.choices[0].text  # generation goes on
    chat = client.chat.completions.create(model=MODEL, max_tokens=2,
                                          messages=[{"role": "user", "content": "Sort a list."}],
                                          extra_body={"prompt_logprobs": 1})
    top = chat.model_extra["prompt_logprobs"]
    assert len(top) == chat.usage.prompt_tokens and top[0] is None
    assert all(1 <= len(e) <= 2 for e in top[1:])


def test_a_prefix_cache_hit_loses_no_prompt_logprobs(server):
    prompt = "class Stack:\n    def __init__(self):\n        self.items = []\n" * 4
    first = post(server, {"prompt": prompt, "max_tokens": 1, "echo": True, "logprobs": 1}).json()
    again = post(server, {"prompt": prompt, "max_tokens": 1}).json()
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] > 0, "the prompt is cached"
    scored = post(server, {"prompt": prompt, "max_tokens": 1, "echo": True, "logprobs": 1}).json()
    # A scored prompt is computed, not read from the cache (cached blocks hold no logits).
    assert scored["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    a, b = first["choices"][0]["logprobs"], scored["choices"][0]["logprobs"]
    assert a["tokens"][:-1] == b["tokens"][:-1]
    for x, y in zip(a["token_logprobs"][1:-1], b["token_logprobs"][1:-1]):
        assert abs(x - y) < 1e-5


def test_echo_with_stream_sends_the_prompt_first(client):
    prompt = "def is_even(n):\n"
    whole = client.completions.create(model=MODEL, prompt=prompt, max_tokens=6, temperature=0,
                                      echo=True, logprobs=1, extra_body={"ignore_eos": True})
    chunks = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=6,
                                            temperature=0, echo=True, logprobs=1, stream=True,
                                            extra_body={"ignore_eos": True}))
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert texts[0] == prompt
    assert "".join(texts) == whole.choices[0].text
    first = chunks[0].choices[0].logprobs
    assert first.token_logprobs[0] is None and len(first.tokens) == whole.usage.prompt_tokens
    streamed = [x for c in chunks if c.choices and c.choices[0].logprobs
                for x in c.choices[0].logprobs.text_offset]
    assert streamed == whole.choices[0].logprobs.text_offset


@pytest.mark.parametrize("body, param", [
    ({"prompt_logprobs": 21}, "prompt_logprobs"),
    ({"prompt_logprobs": -1}, "prompt_logprobs"),
    ({"prompt_logprobs": "2"}, "prompt_logprobs"),
    ({"prompt_logprobs": 1, "stream": True}, "prompt_logprobs"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": -1, "echo": True}, "max_tokens"),
])
def test_bad_prompt_logprobs_requests_are_400_naming_the_field(server, body, param):
    r = post(server, {"prompt": "x = 1", **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert post(server, {"prompt": "x = 1", "max_tokens": 1}).status_code == 200


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
