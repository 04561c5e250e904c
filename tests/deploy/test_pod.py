"""The rendered CPU pod, run here: the engine and the gateway start with the exact
arguments the Deployment gives them (ports moved to free ones, the keys file to a
temporary one), and the kubelet's probes, the Service's port, Prometheus' scrape and
the drain on SIGTERM behave as the manifests promise."""
import json
import re
import signal
import socket
import threading
import time

import httpx
import pytest

from manifests import DEPLOY, flag
from pod import KEY, Pod, host_address

@pytest.fixture
def pod(tmp_path):
    p = Pod(tmp_path)
    yield p
    p.stop()


def wait_for(check, seconds, what, pod):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        assert pod.engine.poll() is None and pod.gateway.poll() is None, pod.logs()
        time.sleep(0.1)
    raise AssertionError(f"{what} within {seconds} s\n{pod.logs()}")


def completion(url, max_tokens, stream=False):
    body = {"model": "sluice-tiny-code", "prompt": "def fibonacci(n):", "max_tokens": max_tokens,
            "temperature": 0, "ignore_eos": True, "stream": stream}
    return body, {"Authorization": f"Bearer {KEY}"}


def test_probes_service_and_scrape_work_as_rendered(pod):
    engine, gateway = pod.engine_c, pod.gateway_c
    startup = engine["startupProbe"]
    # The startup probe passes within its budget (period x failureThreshold).
    wait_for(lambda: pod.probe(engine, "startupProbe") == 200,
             startup["periodSeconds"] * startup["failureThreshold"], "startup probe passes", pod)
    assert pod.probe(engine, "livenessProbe") == 200
    assert pod.probe(engine, "readinessProbe") == 200
    wait_for(lambda: pod.probe(gateway, "readinessProbe") == 200, 10, "gateway ready", pod)
    assert pod.probe(gateway, "livenessProbe") == 200
    assert pod.probe(gateway, "startupProbe") == 200

    # Through the Service's port: the gateway, with a key; without one, 401.
    body, headers = completion(pod.api_url(), 8)
    r = httpx.post(pod.api_url() + "/v1/completions", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 8
    assert httpx.post(pod.api_url() + "/v1/completions", json=body, timeout=60).status_code == 401

    # The metrics port serves probes and metrics, never the API.
    metrics_port = pod.port_of(engine, "metrics")
    scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert re.search(r"^sluice_requests_finished_total 1$", scrape, re.M), scrape[:2000]
    assert 'sluice_cache_config_info{block_size="16"' in scrape
    r = httpx.post(f"http://127.0.0.1:{metrics_port}/v1/completions", json=body, timeout=5)
    assert r.status_code == 404

    # The engine's API and gRPC ports listen on loopback only; the probe port on all.
    addr = host_address()
    if addr:
        for name in ("http", "grpc"):
            with socket.socket() as s:
                s.settimeout(1)
                assert s.connect_ex((addr, pod.port_of(engine, name))) != 0, name
        assert pod.probe(engine, "readinessProbe", host=addr) == 200
        assert pod.probe(gateway, "readinessProbe", host=addr) == 200

    # Every sluice_* metric deploy/ reads (dashboard, alerts, autoscalers, endpoint
    # picker) is one the two servers export.
    pod.gateway.send_signal(signal.SIGHUP)  # populates the key-reload counter
    time.sleep(0.5)
    gw_scrape = httpx.get(f"http://127.0.0.1:{pod.port_of(gateway, 'gateway-admin')}/metrics",
                          timeout=5).text
    exported = set(re.findall(r"^# TYPE (sluice_\w+)", scrape + gw_scrape, re.M))
    referenced = set()
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".json"):
            referenced |= set(re.findall(r"\bsluice_[a-z0-9_]+[a-z0-9]", path.read_text()))
    referenced = {re.sub(r"_(bucket|sum|count)$", "", m) for m in referenced}
    # Names that are not metrics: objects, HPA metric names the adapter defines.
    referenced -= {"sluice_request_arrival_rate", "sluice_slo_guardrail_replicas"}
    assert len(referenced) > 15
    assert referenced <= exported, sorted(referenced - exported)


def test_sigterm_drains_streams_through_the_sidecar(pod):
    engine, gateway = pod.engine_c, pod.gateway_c
    wait_for(lambda: pod.probe(gateway, "readinessProbe") == 200, 120, "pod ready", pod)
    body, headers = completion(pod.api_url(), 200, stream=True)
    chunks, done = [], threading.Event()

    def stream():
        with httpx.stream("POST", pod.api_url() + "/v1/completions", json=body, headers=headers,
                          timeout=120) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    chunks.append(line[6:])
        done.set()

    t = threading.Thread(target=stream)
    t.start()
    wait_for(lambda: len(chunks) >= 3, 30, "stream started", pod)
    # The kubelet: preStop (a sleep), then SIGTERM to the engine; the sidecar stays.
    pod.engine.send_signal(signal.SIGTERM)
    t0 = time.time()
    wait_for(lambda: pod.probe(engine, "readinessProbe") == 503 or pod.engine.poll() is not None,
             2, "readiness fails at once on SIGTERM", pod)
    t.join(float(flag(engine["args"], "drain-timeout-s")) + 10)
    assert done.is_set(), pod.logs()
    assert chunks[-1] == "[DONE]"
    events = [json.loads(c) for c in chunks[:-1]]
    assert not [e for e in events if "error" in e], [e for e in events if "error" in e]
    tokens = sum(len(e["choices"][0]["text"]) > 0 for e in events if e["choices"])
    assert tokens >= 150, tokens  # the whole stream, not cut at SIGTERM
    assert pod.engine.wait(float(flag(engine["args"], "drain-timeout-s"))) == 0, pod.logs()
    assert time.time() - t0 < pod.spec["terminationGracePeriodSeconds"]
    # The gateway outlived the engine and now reports not ready.
    assert pod.gateway.poll() is None
    assert pod.probe(gateway, "readinessProbe") == 503
