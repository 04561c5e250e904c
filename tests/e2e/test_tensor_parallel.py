"""`sluice serve --tensor-parallel-size N` on the CPU backend, driven by the official
`openai` client: greedy completions and streamed chat at 2 and 4 ranks equal one rank's,
logprobs agree, refusals name the numbers, and a rank that dies fails its requests
cleanly, then readiness."""
import subprocess
import time

import httpx
import openai
import pytest
from server_fixture import SluiceServer, free_port

PROMPTS = ["def fibonacci(n):", "import numpy as np\n", "class Stack:\n    def push(self, x):"]


def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def outputs(server):
    c = client(server)
    done = []
    for p in PROMPTS:
        r = c.completions.create(model="sluice-tiny-code", prompt=p, max_tokens=24,
                                 temperature=0, logprobs=2)
        done.append((r.choices[0].text, r.choices[0].logprobs.token_logprobs))
    stream = c.chat.completions.create(
        model="sluice-tiny-code", messages=[{"role": "user", "content": "write a loop"}],
        max_tokens=16, temperature=0, stream=True)
    done.append("".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices))
    return done


@pytest.fixture(scope="module")
def alone(sluice_bin):
    server = SluiceServer(sluice_bin).wait_ready()
    try:
        yield outputs(server)
    finally:
        assert server.stop() == 0, server.logs()


@pytest.mark.parametrize("tp", [2, 4])
def test_ranks_give_one_ranks_outputs(sluice_bin, alone, tp):
    server = SluiceServer(sluice_bin, "--tensor-parallel-size", str(tp)).wait_ready()
    try:
        got = outputs(server)
        for (text, lps), (want_text, want_lps) in zip(got[:-1], alone[:-1]):
            assert text == want_text
            assert max(abs(a - b) for a, b in zip(lps, want_lps)) < 1e-4
        assert got[-1] == alone[-1]
        assert f"{tp} tensor-parallel ranks as threads" in server.logs()
    finally:
        assert server.stop() == 0, server.logs()


def test_a_size_the_heads_do_not_divide_is_refused_naming_them(sluice_bin):
    r = subprocess.run([sluice_bin, "serve", "--port", str(free_port()), "--grpc-port", "-1",
                        "--tensor-parallel-size", "3"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    said = r.stderr + r.stdout
    assert "--tensor-parallel-size 3 does not divide the model's 4 query heads" in said


def test_a_dead_rank_fails_its_requests_then_readiness(sluice_bin):
    server = SluiceServer(sluice_bin, "--tensor-parallel-size", "2", "--inject-step-faults",
                          "after=2,rank=1").wait_ready()
    try:
        body = {"model": "sluice-tiny-code", "prompt": "def f(x):", "max_tokens": 8,
                "temperature": 0}
        failed = [httpx.post(server.url + "/v1/completions", json=body, timeout=30)
                  for _ in range(3)]
        assert all(r.status_code == 500 for r in failed), [r.text for r in failed]
        assert "tensor parallel rank 1: injected fault" in failed[0].json()["error"]["message"]
        deadline = time.time() + 10
        while httpx.get(server.url + "/ready", timeout=5).status_code != 503:
            assert time.time() < deadline, server.logs()
            time.sleep(0.05)
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200  # live, for now
    finally:
        assert server.stop() == 0, server.logs()
