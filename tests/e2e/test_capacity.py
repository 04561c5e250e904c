"""Memory, cost and prefill avoided on /metrics, `sluice plan` against what `sluice serve`
allocates, and `sluice-bench --cost-per-hour` against its own run: the CPU backend and
the tiny model, through the real binaries."""
import json
import os
import pathlib
import re
import subprocess
import time

import httpx
import pytest

from conftest import BIN, ROOT
from server_fixture import SluiceServer

PRICE = 36.0  # USD per hour: 1 cent per second, so seconds of accrual are easy to read
# A pool large enough that the engine's own kinds are most of the process: the rest (the
# binary and its libraries, allocator caches, the tokenizer) is a fixed ~200 MB.
KV_GIB = 2.0
MODEL_DIR = ROOT / "models" / "sluice-tiny-code"


def scrape(url):
    """{(name, frozenset(labels)): value} of one /metrics scrape."""
    text = httpx.get(url + "/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$', line)
        if not m:
            continue
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(metrics, name, **labels):
    return metrics[(name, frozenset(labels.items()))]


def rss_bytes(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def tiny_config():
    return json.loads((MODEL_DIR / "config.json").read_text())


def parameter_count(c):
    """Elements of every tensor the engine loads, from config.json alone."""
    h, i, layers = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    q, kv, d = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    per_layer = (q + 2 * kv) * d * h + h * q * d + 2 * i * h + h * i + 2 * h
    embed = c["vocab_size"] * h
    lm_head = 0 if c.get("tie_word_embeddings") else embed
    return embed + lm_head + layers * per_layer + h


@pytest.fixture(scope="module")
def server(sluice_bin):
    s = SluiceServer(sluice_bin, "--cost-per-hour", str(PRICE), "--kv-cache-gib", str(KV_GIB),
                     "--slo-ttft-ms", "0").wait_ready()
    yield s
    s.stop()


def test_memory_kinds_are_the_cpu_backends_own_bytes(server):
    m = scrape(server.url)
    c = tiny_config()
    blocks = next(int(dict(labels)["num_gpu_blocks"]) for (name, labels), v in m.items()
                  if name == "sluice_cache_config_info")
    block_size = 16
    kv = blocks * block_size * c["num_hidden_layers"] * 2 * c["num_key_value_heads"] * \
        c["head_dim"] * 4
    assert value(m, "sluice_memory_bytes", kind="kv_cache") == kv
    assert value(m, "sluice_memory_bytes", kind="weights") == parameter_count(c) * 4
    assert value(m, "sluice_memory_bytes", kind="activations") > 0
    assert value(m, "sluice_memory_bytes", kind="cuda_graphs") == 0
    if os.environ.get("SLUICE_TEST_SANITIZER"):
        return  # shadow memory and quarantine make the resident set no measure of ours
    # The kinds the engine accounts for explain the process: what is left ("other") is
    # under a tenth of the resident set, and all kinds together are the resident set as
    # /proc reads it a moment later.
    known = sum(value(m, "sluice_memory_bytes", kind=k)
                for k in ("weights", "kv_cache", "activations", "cuda_graphs"))
    rss = rss_bytes(server.proc.pid)
    assert known >= 0.9 * rss, (known, rss)
    total = known + value(m, "sluice_memory_bytes", kind="other")
    assert abs(total - rss) <= 0.1 * rss, (total, rss)
    assert value(m, "sluice_kv_cache_used_bytes") == 0  # idle: no block held


def test_cost_accrues_with_wall_time(server):
    first, t0 = scrape(server.url), time.monotonic()
    time.sleep(4)
    second, t1 = scrape(server.url), time.monotonic()
    assert value(first, "sluice_cost_per_hour_usd") == PRICE
    accrued = value(second, "sluice_cost_usd_total") - value(first, "sluice_cost_usd_total")
    expected = PRICE * (t1 - t0) / 3600
    assert abs(accrued - expected) <= 0.02 * expected, (accrued, expected)


def test_a_repeated_long_prompt_raises_prefill_avoided(server):
    prompt = "def handler(request):\n" + "    x = compute(x, request)\n" * 60
    body = {"model": "sluice-tiny-code", "prompt": prompt, "max_tokens": 2, "temperature": 0}
    before = scrape(server.url)
    for _ in range(3):
        r = httpx.post(server.url + "/v1/completions", json=body, timeout=60)
        assert r.status_code == 200, r.text
    after = scrape(server.url)
    hits = value(after, "sluice_prefix_cache_hits_tokens_total") - \
        value(before, "sluice_prefix_cache_hits_tokens_total")
    assert hits > 0
    assert value(after, "sluice_prefill_seconds_avoided_total") > \
        value(before, "sluice_prefill_seconds_avoided_total")
    # Every step with work lands in the step histograms.
    steps = value(after, "sluice_engine_step_seconds_count")
    assert steps > value(before, "sluice_engine_step_seconds_count")
    assert value(after, "sluice_iteration_tokens_count") == steps
    assert value(after, "sluice_iteration_tokens_sum") >= len(prompt) // 8
    assert ("sluice_num_waiting_tokens", frozenset()) in after


def plan(sluice_bin, *args):
    r = subprocess.run([sluice_bin, "plan", "--json", *args], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_plan_on_the_cpu_is_what_serve_allocates(server, sluice_bin):
    m = scrape(server.url)
    blocks = next(int(dict(labels)["num_gpu_blocks"]) for (name, labels), v in m.items()
                  if name == "sluice_cache_config_info")
    p = plan(sluice_bin, "--backend", "cpu", "--kv-cache-gib", str(KV_GIB))
    assert p["num_kv_blocks"] == blocks
    assert p["kv_cache_bytes"] == value(m, "sluice_memory_bytes", kind="kv_cache")
    assert p["weight_bytes"] == value(m, "sluice_memory_bytes", kind="weights")
    assert p["activation_bytes"] == value(m, "sluice_memory_bytes", kind="activations")


def test_plan_for_llama_8b_on_an_h100_prints_the_measured_floor(sluice_bin):
    config = str(ROOT / "models" / "configs" / "llama-3.1-8b")
    p = plan(sluice_bin, "--model", config, "--device", "H100 SXM", "--memory-bandwidth-gbps",
             "3000", "--input-len", "2048", "--output-len", "1", "--cost-per-hour", "4")
    assert abs(p["decode_floor_batch1_ms"] - 5.09) < 0.01, p
    assert p["device"]["memory_gib"] == 79.6
    assert p["num_kv_blocks"] > 0 and p["workload_sequences"] > 1
    assert p["usd_per_million_output_tokens"] == pytest.approx(
        4 / 3600 / p["max_output_tokens_per_s"] * 1e6)
    text = subprocess.run([sluice_bin, "plan", "--model", config + "/config.json",
                           "--device", "h100"], capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    assert "decode step" in text.stdout and "KV cache" in text.stdout
    bad = subprocess.run([sluice_bin, "plan", "--model", config, "--device", "tpu-v9"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "H100 SXM" in bad.stderr


def test_bench_cost_is_price_times_duration_over_tokens(server, tmp_path):
    bench = BIN / "sluice-bench"
    if not bench.exists():  # the sanitizer builds leave the benchmarks out
        pytest.skip(f"{bench} is not built (SLUICE_BUILD_BENCH=OFF)")
    out = tmp_path / "bench.json"
    r = subprocess.run([str(bench), "--url", server.url, "--num-requests", "8", "--input-len",
                        "32", "--output-len", "8", "--request-rate", "20", "--cost-per-hour",
                        str(PRICE), "--slo-ttft-ms", "10000", "--slo-tpot-ms", "10000",
                        "--out", str(out), "--plot", str(tmp_path / "bench.svg")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "per 1M output tokens" in r.stdout, r.stdout
    doc = json.loads(out.read_text())
    level = doc["results"][0]
    expected = PRICE * level["duration_s"] / 3600 / level["total_output_tokens"] * 1e6
    assert level["usd_per_million_output_tokens"] == pytest.approx(expected, rel=1e-9)
    assert level["usd_per_slo_met_request"] == pytest.approx(
        PRICE * level["duration_s"] / 3600 / level["good_requests"], rel=1e-9)
    assert doc["max_goodput"]["usd_per_million_output_tokens"] == pytest.approx(expected)
    assert "Cost per 1M output tokens" in (tmp_path / "bench.svg").read_text()
