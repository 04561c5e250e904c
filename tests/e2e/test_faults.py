"""Fault injection: a failing or wedged engine, a port in use, a corrupt model, a gateway
whose upstream goes away. Each ends in a clear error and a process that either stays up
and says what is wrong (readiness, liveness) or exits non-zero with the reason."""
import hashlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import threading
import time

import httpx
from server_fixture import SluiceServer, free_port
from test_gateway import Gateway

BODY = {"model": "sluice-tiny-code", "prompt": "def f(x):", "max_tokens": 4, "temperature": 0}


def wait_until(check, seconds, what, server=None):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(what + ("\n" + server.logs() if server else ""))


def test_failing_steps_fail_requests_then_readiness_then_liveness(sluice_bin):
    # Two good steps (one request's prefill and first decode), then every step fails.
    server = SluiceServer(sluice_bin, "--inject-step-faults", "after=2").wait_ready()
    try:
        ok = httpx.post(server.url + "/v1/completions", json={**BODY, "max_tokens": 1},
                        timeout=30)
        assert ok.status_code == 200, ok.text
        failures = []
        for _ in range(3):
            r = httpx.post(server.url + "/v1/completions", json=BODY, timeout=30)
            failures.append(r)
        # Each failing request ends promptly with the engine's reason, not a hang.
        assert all(r.status_code == 500 for r in failures), [r.text for r in failures]
        assert "injected fault: step" in failures[0].json()["error"]["message"]
        # Three failed steps in a row: not ready, new requests refused with the reason.
        ready = httpx.get(server.url + "/ready", timeout=5)
        assert ready.status_code == 503 and ready.json()["status"] == "unhealthy"
        assert "engine steps failed" in ready.json()["reason"]
        refused = httpx.post(server.url + "/v1/completions", json=BODY, timeout=30)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "unhealthy" in refused.json()["error"]["message"]
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200  # still live
        scrape = httpx.get(server.url + "/metrics", timeout=5).text
        assert "sluice_engine_failed_steps_total 3" in scrape, scrape
        assert 'sluice_requests_rejected_total{protocol="http",reason="unhealthy"} 1' in scrape
    finally:
        assert server.stop() == 0, server.logs()


def test_liveness_fails_once_unready_past_the_grace_period(sluice_bin):
    server = SluiceServer(sluice_bin, "--inject-step-faults", "after=0",
                          "--unready-grace-s", "1").wait_ready()
    try:
        codes = [httpx.post(server.url + "/v1/completions", json=BODY, timeout=30).status_code
                 for _ in range(4)]
        assert codes == [500, 500, 500, 503], codes  # three failed steps, then refused
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200
        start = time.time()
        wait_until(lambda: httpx.get(server.url + "/health", timeout=5).status_code == 503,
                   10, "liveness did not fail after the grace period", server)
        assert 0.5 < time.time() - start < 5
        assert "past the grace period" in httpx.get(server.url + "/health").json()["reason"]
    finally:
        assert server.stop() == 0, server.logs()


def test_a_wedged_step_fails_liveness_within_the_step_timeout(sluice_bin):
    server = SluiceServer(sluice_bin, "--inject-step-faults", "after=0,hang",
                          "--step-timeout-s", "1").wait_ready()
    try:
        def post():
            try:
                httpx.post(server.url + "/v1/completions", json=BODY, timeout=10)
            except httpx.TransportError:  # timed out, or the server was killed
                pass

        t = threading.Thread(target=post, daemon=True)
        t.start()
        start = time.time()
        wait_until(lambda: httpx.get(server.url + "/health", timeout=2).status_code == 503,
                   10, "liveness did not fail", server)
        assert time.time() - start < 5
        health = httpx.get(server.url + "/health", timeout=2).json()
        assert "has been running for" in health["reason"]
        assert httpx.get(server.url + "/ready", timeout=2).status_code == 503
    finally:
        # What the kubelet does after liveness fails: the wedged step never returns.
        server.proc.kill()
        server.proc.wait()


def test_port_in_use_exits_non_zero_naming_the_port(sluice_bin):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sluice_bin, "serve", "--host", "127.0.0.1", "--port", str(port),
                            "--grpc-port", "-1"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert str(port) in out and "in use" in out.lower(), out


def test_corrupt_model_exits_non_zero_naming_the_file(sluice_bin, tmp_path):
    model = tmp_path / "broken-model"
    shutil.copytree(pathlib.Path(os.environ["SLUICE_SOURCE_ROOT"]) / "models/sluice-tiny-code",
                    model)
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated mid-tensor
    r = subprocess.run([sluice_bin, "serve", "--model", str(model), "--host", "127.0.0.1",
                        "--port", str(free_port()), "--grpc-port", "-1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "cannot load model" in out and "model.safetensors" in out, out


def test_gateway_answers_503_with_retry_after_while_its_upstream_is_down(
        sluice_bin, gateway_bin, tmp_path):
    key = "sk-fault-test"
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"tenants": [
        {"name": "t", "key_sha256": hashlib.sha256(key.encode()).hexdigest()}]}))
    port = free_port()
    gw = Gateway(gateway_bin, f"http://127.0.0.1:{port}", keys)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        r = httpx.post(gw.url + "/v1/completions", json=BODY, headers=headers, timeout=10)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "upstream_unavailable"
        assert httpx.get(gw.admin + "/ready", timeout=5).status_code == 503
        assert gw.proc.poll() is None
        # The upstream comes (back): the gateway recovers with no restart.
        server = SluiceServer(sluice_bin, port=port).wait_ready()
        try:
            wait_until(lambda: httpx.get(gw.admin + "/ready", timeout=5).status_code == 200,
                       10, "gateway not ready after the upstream returned")
            r = httpx.post(gw.url + "/v1/completions", json=BODY, headers=headers, timeout=30)
            assert r.status_code == 200, r.text
        finally:
            assert server.stop() == 0
    finally:
        gw.stop()
