"""Quotas that a tenant cannot talk its way around: a stream it cuts is still charged
(attack 3), a concurrent burst cannot overdraw the token bucket (4), one request cannot
fan out into hundreds of sequences (5), and only the API passes the public port, with
/tokenize counted like any request (11)."""
import concurrent.futures
import json
import threading
import time

import httpx

from security_helpers import MODEL, auth, error_of, metric, write_keys


def test_a_stream_the_client_cuts_is_still_charged(engine, gateways, tmp_path):
    keys = write_keys(tmp_path / "keys.json", {"cutter": {"tokens_per_minute": 100000}})
    gw = gateways(engine.url, keys)
    body = {"model": MODEL, "prompt": "def f(x):", "max_tokens": 200, "ignore_eos": True,
            "temperature": 0, "stream": True}
    data_events, leaked_usage = 0, []
    with httpx.stream("POST", gw.url + "/v1/completions", json=body, headers=auth("cutter"),
                      timeout=30) as r:
        assert r.status_code == 200, r.read()
        buf = b""
        for piece in r.iter_raw():
            buf += piece
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if not event.startswith(b"data: ") or event == b"data: [DONE]":
                    continue
                data_events += 1
                chunk = json.loads(event[6:])
                if chunk.get("usage"):
                    leaked_usage.append(chunk["usage"])
            if data_events >= 40:
                break  # leaving the block closes the connection mid-stream
    assert data_events >= 40, f"the stream ended after {data_events} events"
    assert not leaked_usage, f"usage the client did not ask for reached it: {leaked_usage[:3]}"

    def charged():
        return metric(gw.admin, "sluice_gateway_tokens_total", tenant="cutter",
                      kind="completion")
    deadline = time.time() + 5
    while charged() < 30 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # anything still to be charged lands before the upper bound is read
    tokens = charged()
    print(f"cut after {data_events} events: {tokens:.0f} completion tokens charged")
    assert 30 <= tokens <= 200, (
        f"a stream cut after {data_events} events was charged {tokens} completion tokens "
        "(expected 30..200: what was generated before the client left)")
    gw.stop()


def test_a_concurrent_burst_cannot_overdraw_the_token_bucket(engine, gateways, tmp_path):
    limit = 400
    keys = write_keys(tmp_path / "keys.json", {"bursty": {"tokens_per_minute": limit}})
    gw = gateways(engine.url, keys)
    body = {"model": MODEL, "prompt": "x = 1", "max_tokens": 200, "ignore_eos": True,
            "temperature": 0}
    barrier = threading.Barrier(20)

    def one(_):
        barrier.wait()
        return httpx.post(gw.url + "/v1/completions", json=body, headers=auth("bursty"),
                          timeout=120)
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 429}, codes
    served = sum(a.json()["usage"]["total_tokens"] for a in answers if a.status_code == 200)
    print(f"burst of 20 x 200 tokens at {limit} tokens/min: {codes.count(200)} served, "
          f"{served} tokens = {served / limit:.2f} x the limit")
    assert codes.count(200) >= 1, "not even one request fitted in the bucket"
    assert served <= 1.25 * limit, (
        f"{codes.count(200)} of 20 concurrent requests were served: {served} tokens, "
        f"{served / limit:.2f} x the {limit} tokens/min limit (at most 1.25 x)")
    for a in answers:
        if a.status_code == 429:
            assert int(a.headers["retry-after"]) >= 1, a.headers
            assert error_of(a)["code"] == "rate_limit_exceeded", a.text
    gw.stop()


def test_one_request_cannot_fan_out_past_the_sequence_limit(engine, gateways, tmp_path):
    # max_concurrent 4: the default max_concurrent_sequences is 64.
    keys = write_keys(tmp_path / "keys.json", {"fanout": {"max_concurrent": 4}})
    gw = gateways(engine.url, keys)
    arrived = metric(engine.url, "sluice_requests_arrived_total")
    wide = {"model": MODEL, "prompt": [f"p{i} =" for i in range(15)], "n": 16,
            "max_tokens": 1, "temperature": 0}  # 240 sequences
    r = httpx.post(gw.url + "/v1/completions", json=wide, headers=auth("fanout"), timeout=60)
    assert r.status_code == 429, (
        f"15 prompts x n 16 = 240 sequences: {r.status_code} (expected 429), "
        f"{len(r.json().get('choices', [])) if r.status_code == 200 else r.text[:300]} choices")
    err = error_of(r)
    assert err["code"] == "rate_limit_exceeded", err
    assert "sequences" in err["message"].lower(), err
    assert metric(engine.url, "sluice_requests_arrived_total") == arrived, (
        "the refused fan-out reached the engine")
    fits = {**wide, "prompt": [f"p{i} =" for i in range(4)]}  # 64 sequences
    r = httpx.post(gw.url + "/v1/completions", json=fits, headers=auth("fanout"), timeout=60)
    assert r.status_code == 200, f"4 prompts x n 16 = 64 sequences: {r.status_code} {r.text[:300]}"
    assert len(r.json()["choices"]) == 64
    assert metric(engine.url, "sluice_requests_arrived_total") == arrived + 1
    gw.stop()


def test_only_the_api_passes_the_public_port_and_tokenize_is_counted(
        engine, gateways, tmp_path):
    keys = write_keys(tmp_path / "keys.json", {"acme": {}, "rpm3": {"requests_per_minute": 3}})
    gw = gateways(engine.url, keys)
    for path in ("/metrics", "/health", "/ready", "/version"):
        r = httpx.get(gw.url + path, headers=auth("acme"), timeout=10)
        assert r.status_code == 404, (
            f"GET {path} through the public port with a tenant's key: {r.status_code} "
            f"{r.text[:200]!r} (the engine's operational endpoints must not pass)")
    assert httpx.get(gw.url + "/v1/models", headers=auth("acme"), timeout=10).status_code == 200
    codes = []
    for _ in range(4):
        r = httpx.post(gw.url + "/tokenize", json={"prompt": "def f(x):"}, headers=auth("rpm3"),
                       timeout=10)
        codes.append(r.status_code)
    assert codes == [200, 200, 200, 429], (
        f"/tokenize at 3 requests/min: {codes} (it must count against the request quota)")
    assert error_of(r)["code"] == "rate_limit_exceeded", r.text
    assert int(r.headers["retry-after"]) >= 1
    gw.stop()
