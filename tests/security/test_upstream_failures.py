"""The gateway tells clients the truth about its upstream: an engine lost mid-stream is an
error event, not a clean end (attack 9); a stopped engine is a 504 and an unready gateway
within seconds (10); a stream the client closes after [DONE] is a success (12)."""
import json
import signal
import time

import httpx
import openai
import pytest

from security_helpers import (MODEL, RecordingUpstream, auth, error_of, key_of, metric,
                              sse_events, wait_for, write_keys)

LONG = {"model": MODEL, "prompt": "def f(x):", "max_tokens": 1500, "ignore_eos": True,
        "temperature": 0}


def count(gw, **labels):
    return metric(gw.admin, "sluice_gateway_requests_total", **labels)


def test_engine_lost_mid_stream_is_an_error_event(own_engines, gateways, tmp_path):
    server = own_engines()
    keys = write_keys(tmp_path / "keys.json", {"acme": {}})
    gw = gateways(server.url, keys)
    failed_before = count(gw, code="502")
    raw, transport_error, killed = b"", None, False
    try:
        with httpx.stream("POST", gw.url + "/v1/completions", json={**LONG, "stream": True},
                          headers=auth("acme"), timeout=15) as r:
            assert r.status_code == 200, r.read()
            for piece in r.iter_raw():
                raw += piece
                if not killed and raw.count(b"\n\n") >= 3:
                    server.proc.send_signal(signal.SIGKILL)
                    killed = True
    except httpx.TransportError as e:
        transport_error = repr(e)  # a connection cut off is tolerated; the event is not
    assert killed, f"the stream ended before the engine could be killed: {raw[-300:]!r}"
    server.proc.wait(10)
    events = sse_events(raw)
    errors = [e for e in events if e["event"] == "error"]
    assert b"data: [DONE]" not in raw, (
        f"a stream whose engine was killed ended with [DONE]: ...{raw[-300:]!r}")
    assert errors, (f"no `event: error` after the engine was killed (transport error: "
                    f"{transport_error}); the stream ended: ...{raw[-300:]!r}")
    data = json.loads(errors[-1]["data"])
    assert data["error"]["type"] == "upstream_error", data
    assert data["error"].get("message"), data
    wait_for(lambda: count(gw, code="502") == failed_before + 1, 5,
             f"sluice_gateway_requests_total{{code=\"502\"}} went from {failed_before} to "
             f"{count(gw, code='502')}, not +1")
    assert gw.alive()
    gw.stop()


def test_engine_lost_mid_stream_raises_in_the_openai_client(own_engines, gateways, tmp_path):
    server = own_engines()
    keys = write_keys(tmp_path / "keys.json", {"acme": {}})
    gw = gateways(server.url, keys)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key_of("acme"),
                           max_retries=0, timeout=15)
    chunks = 0
    with pytest.raises(openai.APIError) as info:
        stream = client.completions.create(
            model=MODEL, prompt=LONG["prompt"], max_tokens=LONG["max_tokens"], temperature=0,
            stream=True, extra_body={"ignore_eos": True})
        for _ in stream:
            chunks += 1
            if chunks == 3:
                server.proc.send_signal(signal.SIGKILL)
    assert chunks >= 3
    assert not isinstance(info.value, openai.APIConnectionError), info.value
    assert info.value.type == "upstream_error", (info.value, info.value.body)
    server.proc.wait(10)
    gw.stop()


def test_a_stopped_engine_is_a_504_and_unready_within_seconds(own_engines, gateways, tmp_path):
    server = own_engines()
    keys = write_keys(tmp_path / "keys.json", {"acme": {}})
    gw = gateways(server.url, keys, "--upstream-timeout-s", "3")
    body = {"model": MODEL, "prompt": "def f(x):", "max_tokens": 2, "temperature": 0}
    assert httpx.get(gw.admin + "/ready", timeout=5).status_code == 200
    assert httpx.post(gw.url + "/v1/completions", json=body, headers=auth("acme"),
                      timeout=30).status_code == 200
    server.proc.send_signal(signal.SIGSTOP)
    try:
        start = time.time()
        try:
            ready = httpx.get(gw.admin + "/ready", timeout=8)
        except httpx.TimeoutException:
            raise AssertionError("/ready gave no answer within 8 s of the engine stopping")
        ready_s = time.time() - start
        print(f"/ready with the engine stopped: {ready.status_code} in {ready_s:.2f} s")
        # The gateway asks with a 2 s timeout; the bound leaves room for a loaded machine
        # (before, /ready hung ~20 s and then said 200).
        assert ready.status_code == 503 and ready_s <= 4, (
            f"/ready answered {ready.status_code} after {ready_s:.2f} s (expected 503 "
            f"within the gateway's 2 s probe timeout): {ready.text}")
        start = time.time()
        try:
            r = httpx.post(gw.url + "/v1/completions", json=body, headers=auth("acme"),
                           timeout=10)
        except httpx.TimeoutException:
            raise AssertionError("a completion got no answer within 10 s of the engine "
                                 "stopping (--upstream-timeout-s 3)")
        took = time.time() - start
        print(f"completion with the engine stopped: {r.status_code} in {took:.2f} s")
        assert r.status_code == 504, f"{r.status_code} after {took:.2f} s: {r.text}"
        assert error_of(r)["code"] == "upstream_timeout", r.text
        assert took < 6, f"the 504 came after {took:.2f} s (--upstream-timeout-s 3)"
    finally:
        server.proc.send_signal(signal.SIGCONT)
    start = time.time()
    wait_for(lambda: httpx.get(gw.admin + "/ready", timeout=5).status_code == 200, 10,
             "/ready did not return to 200 within 10 s of SIGCONT")
    print(f"/ready back to 200 {time.time() - start:.2f} s after SIGCONT")
    assert httpx.post(gw.url + "/v1/completions", json=body, headers=auth("acme"),
                      timeout=30).status_code == 200
    gw.stop()
    assert server.stop() == 0, server.logs()


def test_a_stream_closed_right_after_done_counts_as_200(engine, gateways, tmp_path):
    keys = write_keys(tmp_path / "keys.json", {"closer": {}})
    gw = gateways(engine.url, keys)
    body = {"model": MODEL, "prompt": "def f(x):", "max_tokens": 8, "ignore_eos": True,
            "temperature": 0, "stream": True}
    rounds = 20
    with httpx.Client(timeout=30) as client:
        for i in range(rounds):
            with client.stream("POST", gw.url + "/v1/completions", json=body,
                               headers=auth("closer")) as r:
                assert r.status_code == 200
                raw = b""
                for piece in r.iter_raw():
                    raw += piece
                    if b"data: [DONE]" in raw:
                        break  # closes the connection, the chunked terminator unread
                assert b"data: [DONE]" in raw, f"round {i}: no [DONE]: {raw[-200:]!r}"

    def settled():
        return count(gw, tenant="closer", code="200") + count(gw, tenant="closer", code="499")
    wait_for(lambda: settled() >= rounds, 5, "the gateway did not count every stream")
    time.sleep(0.2)
    ok, gone = count(gw, tenant="closer", code="200"), count(gw, tenant="closer", code="499")
    print(f"{rounds} streams closed right after [DONE]: {ok:.0f} counted 200, {gone:.0f} 499")
    assert gone == 0 and ok == rounds, (
        f"of {rounds} streams read to [DONE], {gone} were counted 499 (client gone) and "
        f"{ok} 200")
    gw.stop()


def test_done_then_close_counts_as_200_when_the_upstream_ends_late(gateways, tmp_path):
    """The same as above made deterministic: an upstream that sends [DONE] and ends its
    chunked body only 0.5 s later, so the client is always gone before the end."""
    upstream = RecordingUpstream(done_delay_s=0.5)
    try:
        keys = write_keys(tmp_path / "keys.json", {"closer": {}})
        gw = gateways(upstream.url, keys)
        body = {"model": MODEL, "prompt": "x", "max_tokens": 3, "stream": True}
        rounds = 3
        for i in range(rounds):
            with httpx.stream("POST", gw.url + "/v1/completions", json=body,
                              headers=auth("closer"), timeout=10) as r:
                assert r.status_code == 200
                raw = b""
                for piece in r.iter_raw():
                    raw += piece
                    if b"data: [DONE]" in raw:
                        break
                assert b"data: [DONE]" in raw, f"round {i}: no [DONE]: {raw[-200:]!r}"
        wait_for(lambda: count(gw, tenant="closer") >= rounds, 5,
                 "the gateway did not count every stream")
        time.sleep(0.7)  # past the upstream's late end
        ok, gone = count(gw, tenant="closer", code="200"), count(gw, tenant="closer", code="499")
        print(f"{rounds} streams closed after [DONE], upstream ending late: {ok:.0f} counted "
              f"200, {gone:.0f} 499")
        assert gone == 0 and ok == rounds, (
            f"of {rounds} streams read to [DONE], {gone} were counted 499 and {ok} 200")
        gw.stop()
    finally:
        upstream.stop()
