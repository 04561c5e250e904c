"""The gRPC API of `sluice serve` with Python grpcio clients: greedy parity with the golden
outputs, streaming, tokenizer calls, errors naming the field, health and reflection,
cancellation and deadlines freeing blocks, RESOURCE_EXHAUSTED with RetryInfo under
overload, and drain on SIGTERM."""
import concurrent.futures
import importlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import grpc
import httpx
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
