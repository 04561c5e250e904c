#!/usr/bin/env python3
"""Closed-loop serving benchmark: requests/s and TTFT percentiles for short streamed
completions at several concurrencies, against a running server (--url) or one it starts.

    .venv/bin/python bench/serving/quick_bench.py --concurrency 1 8 64
"""
import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time

import httpx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "e2e"))
from server_fixture import SluiceServer  # noqa: E402


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def one(client, url, model, max_tokens):
    body = {"model": model, "prompt": "def fibonacci(n):\n", "max_tokens": max_tokens,
            "temperature": 0, "ignore_eos": True, "stream": True}
    start = time.perf_counter()
    ttft = None
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        if r.status_code != 200:
            return None
        async for line in r.aiter_lines():
            if ttft is None and line.startswith("data: {"):
                ttft = time.perf_counter() - start
    return ttft, time.perf_counter() - start


async def level(url, model, concurrency, requests, max_tokens):
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=concurrency)) as c:
        queue = list(range(requests))
        results = []

        async def worker():
            while queue:
                queue.pop()
                r = await one(c, url, model, max_tokens)
                if r:
                    results.append(r)
        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
    ttfts = [r[0] * 1000 for r in results]
    return {"concurrency": concurrency, "ok": len(results), "req_s": len(results) / elapsed,
            "tok_s": len(results) * max_tokens / elapsed, "ttft_p50": percentile(ttfts, 50),
            "ttft_p99": percentile(ttfts, 99), "e2e_mean_ms": statistics.mean(r[1] for r in results) * 1000}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", help="server to measure (default: start build/bin/sluice serve)")
    ap.add_argument("--model", default="sluice-tiny-code")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--requests-per-level", type=int, default=0,
                    help="default: 16 x concurrency, at least 32")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--binary", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                     "build", "bin", "sluice"))
    args = ap.parse_args()
    server = None
    url = args.url
    if url is None:
        server = SluiceServer(args.binary, "--max-num-seqs", "64", "--max-waiting-requests", "1024")
        server.wait_ready()
        url = server.url
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    print(f"machine: {platform.node()} | {os.cpu_count()} CPUs | {cpu}")
    print(f"server: {url}, {args.max_tokens}-token streamed completions, closed loop")
    rows = []
    try:
        for c in args.concurrency:
            n = args.requests_per_level or max(32, 16 * c)
            print(f"  concurrency {c}: {n} requests ...", flush=True)
            rows.append(asyncio.run(level(url, args.model, c, n, args.max_tokens)))
    finally:
        if server:
            server.stop()
    print(f"{'conc':>5} {'ok':>5} {'req/s':>8} {'tok/s':>8} {'TTFT p50 ms':>12} {'TTFT p99 ms':>12}")
    for r in rows:
        print(f"{r['concurrency']:>5} {r['ok']:>5} {r['req_s']:>8.1f} {r['tok_s']:>8.0f} "
              f"{r['ttft_p50']:>12.1f} {r['ttft_p99']:>12.1f}")


if __name__ == "__main__":
    main()
