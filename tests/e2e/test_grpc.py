"""The gRPC API of `sluice serve` with Python grpcio clients: greedy parity with the golden
outputs, streaming, stop strings and logprobs equal to the HTTP API's on the same requests,
tokenizer calls, errors naming the field, health and reflection, cancellation and deadlines
freeing blocks, RESOURCE_EXHAUSTED with RetryInfo under overload, and drain on SIGTERM."""
import concurrent.futures
import importlib
import itertools
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import grpc
import httpx
import openai
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from conftest import ROOT
from server_fixture import SluiceServer
from test_gateway import metric


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """The Python stubs of proto/sluice/v1, generated from the repository's .proto."""
    out = tmp_path_factory.mktemp("stubs")
    from grpc_tools import protoc
    assert protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"--python_out={out}",
                        f"--grpc_python_out={out}",
                        str(ROOT / "proto" / "sluice" / "v1" / "generation.proto")]) == 0
    sys.path.insert(0, str(out))
    mod = importlib.import_module("sluice.v1.generation_pb2")
    grpc_mod = importlib.import_module("sluice.v1.generation_pb2_grpc")
    return mod, grpc_mod


@pytest.fixture(scope="module")
def server(sluice_bin):
    s = SluiceServer(sluice_bin, "--slo-ttft-ms", "0").wait_ready()
    yield s
    s.stop()


def stub_for(server, pb):
    channel = grpc.insecure_channel(server.grpc_target)
    grpc.channel_ready_future(channel).result(timeout=10)
    return pb[1].GenerationStub(channel), channel


def greedy(pb, max_tokens, **kw):
    return pb[0].SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, **kw)


def test_greedy_generate_matches_the_golden_outputs(server, pb, golden):
    stub, _ = stub_for(server, pb)
    for case in golden["cases"]:
        responses = list(stub.Generate(pb[0].GenerateRequest(
            text=case["prompt"], sampling=greedy(pb, 32)), timeout=60))
        assert len(responses) == 1  # stream = false: one answer at the end
        r = responses[0]
        assert list(r.token_ids) == case["greedy_ids"]
        assert r.text == case["greedy_text"]
        assert r.finish_reason == pb[0].FINISH_REASON_LENGTH
        assert r.usage.prompt_tokens == len(case["prompt_ids"])
        assert r.usage.completion_tokens == 32
        # Token ids in, the same answer.
        again = list(stub.Generate(pb[0].GenerateRequest(
            token_ids=pb[0].TokenIds(ids=case["prompt_ids"]), sampling=greedy(pb, 32),
            request_id="mine"), timeout=60))
        assert list(again[0].token_ids) == case["greedy_ids"]
        assert again[0].request_id == "mine"
    # A prompt of whole blocks, twice: the second is served from the prefix cache.
    long = "".join(f"def helper_{i}(x):\n    return x + {i}\n" for i in range(10))
    usage = [list(stub.Generate(pb[0].GenerateRequest(text=long, sampling=greedy(pb, 2)),
                                timeout=60))[0].usage for _ in range(2)]
    assert usage[0].prompt_tokens > 32
    assert usage[0].cached_tokens == 0 and usage[1].cached_tokens >= 32


def test_streamed_deltas_concatenate_to_the_text(server, pb, golden):
    stub, _ = stub_for(server, pb)
    case = golden["cases"][1]
    responses = list(stub.Generate(pb[0].GenerateRequest(
        text=case["prompt"], sampling=greedy(pb, 32), stream=True), timeout=60))
    assert len(responses) > 5
    assert "".join(r.text for r in responses) == case["greedy_text"]
    assert [t for r in responses for t in r.token_ids] == case["greedy_ids"]
    assert all(r.finish_reason == 0 for r in responses[:-1])
    assert responses[-1].finish_reason == pb[0].FINISH_REASON_LENGTH
    assert responses[-1].usage.completion_tokens == 32
    assert len({r.request_id for r in responses}) == 1


def test_tokenizer_and_model_info(server, pb, golden):
    stub, _ = stub_for(server, pb)
    case = golden["cases"][0]
    ids = stub.Tokenize(pb[0].TokenizeRequest(text=case["prompt"], add_special_tokens=True))
    assert list(ids.token_ids) == case["prompt_ids"]
    text = stub.Detokenize(pb[0].DetokenizeRequest(token_ids=case["greedy_ids"]))
    assert text.text == case["greedy_text"]
    info = stub.GetModelInfo(pb[0].GetModelInfoRequest())
    assert info.name == "sluice-tiny-code" and info.architecture == "llama"
    assert info.context_window == 2048 and info.block_size == 16 and info.vocab_size == 4096


def test_bad_input_is_invalid_argument_naming_the_field(server, pb):
    stub, _ = stub_for(server, pb)
    cases = [
        (pb[0].GenerateRequest(text="x", sampling=pb[0].SamplingParams(temperature=5)),
         "sampling.temperature"),
        (pb[0].GenerateRequest(text="x", sampling=pb[0].SamplingParams(max_tokens=0)),
         "sampling.max_tokens"),
        (pb[0].GenerateRequest(), "input"),
        (pb[0].GenerateRequest(token_ids=pb[0].TokenIds(ids=[1, 99999])), "99999"),
        (pb[0].GenerateRequest(token_ids=pb[0].TokenIds(ids=[5] * 3000)), "context"),
    ]
    for request, expect in cases:
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Generate(request, timeout=30))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        assert expect in e.value.details(), e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.Detokenize(pb[0].DetokenizeRequest(token_ids=[1, -4]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "token_ids[1]" in e.value.details()
    # The server is still there.
    assert httpx.get(server.url + "/health").status_code == 200


# --- Stop strings and logprobs: the same answer as the HTTP API's -------------------------

MODEL = "sluice-tiny-code"
PARITY_PROMPTS = [
    "def fibonacci(n):\n",
    "import numpy as np\n\n\ndef normalize(x):\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n",
    "for i in range(10):\n    if i % 2 == 0:\n",
]
# Greedy, and sampled with a seed: both reproducible, so both APIs must agree token for token.
PARITY_SAMPLING = {"greedy": {"temperature": 0.0}, "seeded": {"temperature": 0.8, "seed": 7}}
TOP = 5
LOGPROB_TOLERANCE = 1e-5
FINISH_NAMES = {"stop": "FINISH_REASON_STOP", "length": "FINISH_REASON_LENGTH"}
NEVER = "\u00a7never\u00a7"  # a second stop string that does not occur
_salts = itertools.count()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def new_salt():
    """A fresh cache salt: both sides of a comparison prefill the whole prompt, so no
    logprob differs for having been computed over cached blocks."""
    return f"parity-{next(_salts)}"


def http_completion(client, prompt, sampling, stop=None, logprobs=TOP, max_tokens=32):
    kw = dict(sampling)
    if stop is not None:
        kw["stop"] = stop
    if logprobs is not None:
        kw["logprobs"] = logprobs
    return client.completions.create(model=MODEL, prompt=prompt, max_tokens=max_tokens,
                                     extra_body={"ignore_eos": True, "cache_salt": new_salt()},
                                     **kw)


def grpc_generate(stub, pb, prompt, sampling, stop=None, logprobs=TOP, max_tokens=32,
                  stream=False):
    params = pb[0].SamplingParams(max_tokens=max_tokens, ignore_eos=True, stop=stop or [],
                                  **sampling)
    if logprobs is not None:
        params.logprobs = logprobs
    return list(stub.Generate(pb[0].GenerateRequest(
        text=prompt, sampling=params, stream=stream, cache_salt=new_salt()), timeout=60))


def joined(responses):
    """Text, token ids and logprobs of a call's responses, concatenated."""
    return ("".join(r.text for r in responses), [t for r in responses for t in r.token_ids],
            [lp for r in responses for lp in r.logprobs])


def assert_same_answer(pb, http, responses, top, greedy=False):
    """The gRPC call's `responses` (one, or a stream) answer what the HTTP completion did."""
    choice, final = http.choices[0], responses[-1]
    text, ids, lps = joined(responses)
    assert text == choice.text
    assert final.finish_reason == pb[0].FinishReason.Value(FINISH_NAMES[choice.finish_reason])
    assert all(r.finish_reason == 0 for r in responses[:-1])
    assert final.usage.completion_tokens == http.usage.completion_tokens == len(ids)
    assert final.usage.prompt_tokens == http.usage.prompt_tokens
    http_lp = choice.logprobs
    assert http_lp is not None
    assert len(http_lp.tokens) == len(http_lp.token_logprobs) == len(http_lp.top_logprobs)
    assert len(lps) == len(ids) == len(http_lp.tokens), "a logprob per token, on both APIs"
    for i, lp in enumerate(lps):
        at = f"token {i} of {text!r}"
        assert lp.token_id == ids[i], at
        assert lp.token == http_lp.tokens[i], at
        assert lp.logprob <= 0.0, at
        assert abs(lp.logprob - http_lp.token_logprobs[i]) <= LOGPROB_TOLERANCE, at
        assert len(lp.top) == top, at
        top_lps = [t.logprob for t in lp.top]
        assert top_lps == sorted(top_lps, reverse=True), at  # most likely first
        if greedy and top:
            assert abs(lp.top[0].logprob - lp.logprob) <= LOGPROB_TOLERANCE, at
        # HTTP keys its alternatives by text: of alternatives with equal texts (partial
        # UTF-8 all shows as U+FFFD) it answers one.
        alternatives = {}
        for t in lp.top:
            alternatives.setdefault(t.token, []).append(t.logprob)
        assert alternatives.keys() == http_lp.top_logprobs[i].keys(), at
        for token, values in alternatives.items():
            assert any(abs(v - http_lp.top_logprobs[i][token]) <= LOGPROB_TOLERANCE
                       for v in values), (at, token, values, http_lp.top_logprobs[i][token])


def stop_inside(text, length=4):
    """A `length`-character piece of `text` whose first occurrence is well inside it
    (after the first third, else as late before it as there is one: repetitive text has
    new pieces only early on), and where it starts."""
    for starts in (range(len(text) // 3, len(text) - length),
                   range(len(text) // 3 - 1, 5, -1)):
        for start in starts:
            piece = text[start:start + length]
            if piece.strip() and text.find(piece) == start:
                return piece, start
    pytest.fail(f"no stop string to pick in {text!r}")


@pytest.mark.parametrize("mode", sorted(PARITY_SAMPLING))
def test_stop_strings_and_logprobs_equal_http(server, pb, client, mode):
    stub, _ = stub_for(server, pb)
    sampling = PARITY_SAMPLING[mode]
    for prompt in PARITY_PROMPTS:
        # Unconstrained: max_tokens ends both, with the same tokens and logprobs.
        full = http_completion(client, prompt, sampling)
        assert full.choices[0].finish_reason == "length"
        assert full.usage.completion_tokens == 32
        responses = grpc_generate(stub, pb, prompt, sampling)
        assert len(responses) == 1
        assert_same_answer(pb, full, responses, TOP, greedy=mode == "greedy")
        # A stop string that occurs mid-output ends both before it, finish reason stop.
        text = full.choices[0].text
        stop, cut = stop_inside(text)
        http = http_completion(client, prompt, sampling, stop=[NEVER, stop])
        assert http.choices[0].finish_reason == "stop", (prompt, stop)
        assert http.choices[0].text == text[:cut], (prompt, stop)
        responses = grpc_generate(stub, pb, prompt, sampling, stop=[NEVER, stop])
        assert len(responses) == 1
        assert responses[0].text == text[:cut], (prompt, stop)
        assert responses[0].finish_reason == pb[0].FINISH_REASON_STOP
        assert responses[0].usage.completion_tokens < 32
        assert_same_answer(pb, http, responses, TOP, greedy=mode == "greedy")


@pytest.mark.parametrize("mode", sorted(PARITY_SAMPLING))
def test_streamed_stop_strings_and_logprobs_equal_the_single_answer(server, pb, client, mode):
    stub, _ = stub_for(server, pb)
    sampling = PARITY_SAMPLING[mode]
    for prompt in PARITY_PROMPTS[:2]:
        text = http_completion(client, prompt, sampling, logprobs=None).choices[0].text
        stop, cut = stop_inside(text)
        for stops in (None, [stop]):
            single = grpc_generate(stub, pb, prompt, sampling, stop=stops)
            streamed = grpc_generate(stub, pb, prompt, sampling, stop=stops, stream=True)
            assert len(single) == 1 and len(streamed) > 1
            s_text, s_ids, s_lps = joined(single)
            t_text, t_ids, t_lps = joined(streamed)
            assert t_text == s_text == (text if stops is None else text[:cut])
            assert t_ids == s_ids
            assert len(t_lps) == len(s_lps) == len(s_ids)
            for r in streamed:
                assert len(r.logprobs) == len(r.token_ids)  # beside the response's tokens
            for a, b in zip(t_lps, s_lps):
                assert (a.token_id, a.token) == (b.token_id, b.token)
                assert abs(a.logprob - b.logprob) <= LOGPROB_TOLERANCE
                assert [(t.token_id, t.token) for t in a.top] == \
                       [(t.token_id, t.token) for t in b.top]
                assert all(abs(x.logprob - y.logprob) <= LOGPROB_TOLERANCE
                           for x, y in zip(a.top, b.top))
            assert streamed[-1].finish_reason == single[0].finish_reason == (
                pb[0].FINISH_REASON_LENGTH if stops is None else pb[0].FINISH_REASON_STOP)
            assert streamed[-1].usage.completion_tokens == single[0].usage.completion_tokens
            assert len({r.request_id for r in streamed}) == 1
            # And the stream answers what HTTP does.
            http = http_completion(client, prompt, sampling, stop=stops)
            assert_same_answer(pb, http, streamed, TOP, greedy=mode == "greedy")


def test_logprobs_unset_zero_and_twenty(server, pb, client):
    stub, _ = stub_for(server, pb)
    prompt, sampling = PARITY_PROMPTS[0], PARITY_SAMPLING["greedy"]
    # Unset: no logprobs at all, the same tokens.
    plain = grpc_generate(stub, pb, prompt, sampling, logprobs=None, stream=True)
    assert all(len(r.logprobs) == 0 for r in plain)
    with_lps = grpc_generate(stub, pb, prompt, sampling, logprobs=TOP)
    assert joined(plain)[1] == joined(with_lps)[1]
    # 0: each token's own logprob, no alternatives; 20, the most, as HTTP answers.
    for k in (0, 20):
        http = http_completion(client, prompt, sampling, logprobs=k)
        responses = grpc_generate(stub, pb, prompt, sampling, logprobs=k)
        assert_same_answer(pb, http, responses, k, greedy=True)


def test_bad_logprobs_and_stop_are_invalid_argument_naming_the_field(server, pb):
    stub, _ = stub_for(server, pb)

    def request(**kw):
        return pb[0].GenerateRequest(text="def f(x):", sampling=pb[0].SamplingParams(
            max_tokens=4, **kw))
    cases = [
        (request(logprobs=21), "sampling.logprobs"),
        (request(logprobs=-1), "sampling.logprobs"),
        (request(stop=[""]), "sampling.stop"),
        (request(stop=["a", ""]), "sampling.stop"),
        (request(stop=[f"stop{i}" for i in range(17)]), "sampling.stop"),
    ]
    for req, expect in cases:
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Generate(req, timeout=30))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        assert expect in e.value.details(), e.value.details()
    # The limits themselves are fine.
    for req in (request(logprobs=20), request(logprobs=0),
                request(stop=[f"stop{i}" for i in range(16)])):
        assert list(stub.Generate(req, timeout=30))[-1].finish_reason != 0


def test_overlong_stop_string_is_invalid_argument(server, pb):
    """generation.proto: each stop string is 1 to 1024 bytes."""
    stub, _ = stub_for(server, pb)
    sampling = pb[0].SamplingParams(max_tokens=4, stop=["x" * 1025])
    with pytest.raises(grpc.RpcError) as e:
        list(stub.Generate(pb[0].GenerateRequest(text="def f(x):", sampling=sampling),
                           timeout=30))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert "sampling.stop" in e.value.details(), e.value.details()
    # 1024 bytes (here 512 two-byte characters) is allowed.
    sampling = pb[0].SamplingParams(max_tokens=4, stop=["\u00e9" * 512])
    assert list(stub.Generate(pb[0].GenerateRequest(text="def f(x):", sampling=sampling),
                              timeout=30))[-1].finish_reason != 0


# One validator (the engine's) for both fronts: the same values are refused, naming the
# same field, and the same accepted.
SAMPLING_RULES = [
    ({"temperature": 2.5}, "temperature", False),
    ({"top_p": 0.0}, "top_p", False),
    ({"top_k": -2}, "top_k", False),
    ({"top_k": -1}, None, True),  # off, as vLLM spells it
    ({"min_p": 1.5}, "min_p", False),
    ({"presence_penalty": -2.5}, "presence_penalty", False),
    ({"repetition_penalty": 0.0}, "repetition_penalty", False),
    ({"repetition_penalty": 0.0005}, None, True),
    ({"repetition_penalty": 10.5}, "repetition_penalty", False),
    ({"stop": ["x" * 1025]}, "stop", False),
]


@pytest.mark.parametrize("fields,field,ok", SAMPLING_RULES)
def test_both_fronts_apply_the_same_sampling_rules(server, pb, fields, field, ok):
    stub, _ = stub_for(server, pb)
    http = httpx.post(f"{server.url}/v1/completions", timeout=30, json={
        "model": "sluice-tiny-code", "prompt": "def f(x):", "max_tokens": 2, **fields})
    try:
        list(stub.Generate(pb[0].GenerateRequest(
            text="def f(x):", sampling=pb[0].SamplingParams(max_tokens=2, **fields)), timeout=30))
        grpc_error = None
    except grpc.RpcError as e:
        grpc_error = e
    if ok:
        assert http.status_code == 200, http.text
        assert grpc_error is None, grpc_error.details()
        return
    assert http.status_code == 400, http.text
    assert http.json()["error"]["param"] == field, http.text
    assert grpc_error is not None and grpc_error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"sampling.{field}" in grpc_error.details(), grpc_error.details()


def test_health_and_reflection(server, pb):
    _, channel = stub_for(server, pb)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "sluice.v1.Generation"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]))
    names = {s.name for a in answers for s in a.list_services_response.service}
    assert "sluice.v1.Generation" in names and "grpc.health.v1.Health" in names


def wait_idle(server, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (metric(server.url, "sluice_num_requests_running") == 0 and
                metric(server.url, "sluice_num_requests_waiting") == 0 and
                metric(server.url, "sluice_kv_cache_usage_ratio") == 0):
            return True
        time.sleep(0.05)
    return False


def test_cancelled_calls_and_deadlines_free_their_blocks(server, pb):
    stub, _ = stub_for(server, pb)
    assert wait_idle(server)
    cancelled_before = metric(server.url, "sluice_requests_total", outcome="cancelled",
                              protocol="grpc")

    def cancel_mid_stream(i):
        call = stub.Generate(pb[0].GenerateRequest(
            text=f"def f{i}(x):", sampling=greedy(pb, 1500), stream=True), timeout=60)
        for n, _ in enumerate(call):
            if n == 2:
                call.cancel()
                break
        return call.code()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(cancel_mid_stream, range(100)))
    assert all(c == grpc.StatusCode.CANCELLED for c in codes), set(codes)
    assert wait_idle(server), "blocks still allocated after 100 cancelled calls"
    assert metric(server.url, "sluice_requests_total", outcome="cancelled",
                  protocol="grpc") - cancelled_before == 100
    with pytest.raises(grpc.RpcError) as e:
        list(stub.Generate(pb[0].GenerateRequest(text="def g(x):", sampling=greedy(pb, 1900),
                                                 stream=True), timeout=0.3))
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_idle(server), "blocks still allocated after a deadline"


def test_overload_is_resource_exhausted_with_retry_info(sluice_bin, pb):
    s = SluiceServer(sluice_bin, "--max-waiting-requests", "16", "--max-num-seqs", "4",
                     "--slo-ttft-ms", "0").wait_ready()
    try:
        stub, _ = stub_for(s, pb)
        barrier = threading.Barrier(60)

        def one(i):
            if i < 60:
                barrier.wait()
            try:
                for _ in stub.Generate(pb[0].GenerateRequest(
                        text=f"x = {i}", sampling=greedy(pb, 24), stream=True), timeout=120):
                    pass
                return "ok", None
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    return str(e.code()), e.details()
                status = rpc_status.from_call(e)
                retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
                info = error_details_pb2.RetryInfo()
                retry[0].Unpack(info)
                return "exhausted", info.retry_delay.ToMilliseconds()
        with concurrent.futures.ThreadPoolExecutor(300) as pool:
            results = list(pool.map(one, range(300)))
        kinds = {r[0] for r in results}
        assert kinds <= {"ok", "exhausted"}, [r for r in results if r[0] not in ("ok", "exhausted")]
        assert "exhausted" in kinds and "ok" in kinds
        assert all(r[1] > 0 for r in results if r[0] == "exhausted")
        assert metric(s.url, "sluice_requests_rejected_total", reason="overloaded",
                      protocol="grpc") == sum(r[0] == "exhausted" for r in results)
    finally:
        s.stop()


def test_sigterm_turns_health_not_serving_while_streams_finish(sluice_bin, pb):
    s = SluiceServer(sluice_bin, "--slo-ttft-ms", "0", "--drain-timeout-s", "30").wait_ready()
    stub, channel = stub_for(s, pb)
    health = health_pb2_grpc.HealthStub(channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    results = {}

    def long_stream(i):
        texts = [r.text for r in stub.Generate(pb[0].GenerateRequest(
            text=f"def h{i}(x):", sampling=greedy(pb, 40), stream=True), timeout=120)]
        results[i] = "".join(texts)
    threads = [threading.Thread(target=long_stream, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    s.proc.send_signal(signal.SIGTERM)
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    for t in threads:
        t.join(120)
    assert len(results) == 4 and all(len(v) > 0 for v in results.values())
    assert s.proc.wait(60) == 0


def test_logit_bias_allowed_ids_and_min_tokens_over_grpc(server, pb):
    stub, _ = stub_for(server, pb)

    def ids(**kw):
        r = list(stub.Generate(pb[0].GenerateRequest(text="def f(x):", sampling=greedy(pb, 8, **kw)),
                               timeout=30))
        return list(r[-1].token_ids)

    assert ids(logit_bias={1234: 100.0}) == [1234] * 8
    assert set(ids(allowed_token_ids=[100, 200])) <= {100, 200}
    with pytest.raises(grpc.RpcError) as e:
        ids(logit_bias={10**6: 1.0})
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sampling.logit_bias" in e.value.details(), e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        ids(min_tokens=9)
    assert "sampling.min_tokens" in e.value.details(), e.value.details()


@pytest.fixture(scope="module")
def reflection_v1(tmp_path_factory):
    """Stubs of grpc.reflection.v1 from the repository's .proto (grpcio-reflection 1.68's
    Python package has v1alpha only)."""
    out = tmp_path_factory.mktemp("reflection_v1")
    from grpc_tools import protoc
    assert protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"--python_out={out}",
                        str(ROOT / "proto" / "grpc" / "reflection" / "v1" / "reflection.proto")
                        ]) == 0
    # Loaded by path: the package name grpc.* is grpcio's own.
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "reflection_v1_pb2", out / "grpc" / "reflection" / "v1" / "reflection_pb2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reflect(channel, m, **request):
    call = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                 request_serializer=m.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=m.ServerReflectionResponse.FromString)
    return list(call(iter([m.ServerReflectionRequest(**request)]), timeout=10))[0]


def test_reflection_v1_lists_and_describes_every_service(server, pb, reflection_v1):
    # What `grpcurl list` and `grpcurl describe` ask (v1 first, as current grpcurl does).
    from google.protobuf import descriptor_pb2, descriptor_pool
    _, channel = stub_for(server, pb)
    names = {s.name for s in reflect(channel, reflection_v1, list_services="")
             .list_services_response.service}
    assert {"sluice.v1.Generation", "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection"} <= names
    for symbol, methods in (("grpc.health.v1.Health", {"Check", "Watch"}),
                            ("sluice.v1.Generation", {"Generate", "Tokenize"})):
        answer = reflect(channel, reflection_v1, file_containing_symbol=symbol)
        files = answer.file_descriptor_response.file_descriptor_proto
        assert files, answer
        pool = descriptor_pool.DescriptorPool()
        protos = [descriptor_pb2.FileDescriptorProto.FromString(f) for f in files]
        for proto in reversed(protos):  # the asked-for file first, its imports after
            pool.Add(proto)
        service = pool.FindServiceByName(symbol)
        assert methods <= {m.name for m in service.methods}
    missing = reflect(channel, reflection_v1, file_containing_symbol="no.such.Service")
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    by_name = reflect(channel, reflection_v1, file_by_filename="sluice/v1/generation.proto")
    assert by_name.file_descriptor_response.file_descriptor_proto
    # v1alpha describes health too now that its descriptors are in the pool.
    alpha = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = list(alpha.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="grpc.health.v1.Health")])))[0]
    assert answer.file_descriptor_response.file_descriptor_proto


@pytest.mark.parametrize("method, streaming", [
    ("/sluice.v1.Generation/Generate", True), ("/sluice.v1.Generation/Tokenize", False),
    ("/sluice.v1.Generation/Detokenize", False), ("/sluice.v1.Generation/GetModelInfo", False)])
def test_malformed_messages_are_invalid_argument_naming_the_type(server, pb, method, streaming):
    _, channel = stub_for(server, pb)
    raw = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    call = (channel.unary_stream if streaming else channel.unary_unary)(method, **raw)
    # Bytes that are no protobuf; then a field 1 holding invalid UTF-8 (or a cut varint),
    # which an empty message (GetModelInfoRequest) keeps as an unknown field.
    cases = [b"\xff\xff\xff\xff\x0f junk"]
    if not method.endswith("GetModelInfo"):
        cases.append(b"\x0a\x05\xc3\x28\xa0\xa1\xff")
    for garbage in cases:
        with pytest.raises(grpc.RpcError) as e:
            result = call(garbage, timeout=10)
            if streaming:
                list(result)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        assert "not a valid sluice.v1." in e.value.details()
    # The server is still up and answering.
    stub, _ = stub_for(server, pb)
    assert stub.Tokenize(pb[0].TokenizeRequest(text="x = 1")).token_ids
