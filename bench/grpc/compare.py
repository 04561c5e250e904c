"""Streamed generation over gRPC against HTTP on the same `sluice serve`: time to first
token and streamed tokens/s, with Python clients on both sides (grpcio, httpx), closed
loop at a fixed concurrency, alternating rounds.

  .venv/bin/python bench/grpc/compare.py [--bin build/bin] [--concurrency 4]
"""
import argparse
import concurrent.futures
import importlib
import os
import pathlib
import platform
import socket
import statistics
import sys
import tempfile
import time

import grpc
import httpx

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from server_fixture import SluiceServer  # noqa: E402


def stubs():
    out = tempfile.mkdtemp()
    from grpc_tools import protoc
    protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"--python_out={out}", f"--grpc_python_out={out}",
                 str(ROOT / "proto" / "sluice" / "v1" / "generation.proto")])
    sys.path.insert(0, out)
    return (importlib.import_module("sluice.v1.generation_pb2"),
            importlib.import_module("sluice.v1.generation_pb2_grpc"))


# NOTE: without TCP_NODELAY the client's request body waits for the server's delayed ACK
# of its headers (Nagle), which adds 40-200 ms to HTTP's TTFT that is not the server's.
HTTP = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=64),
                    transport=httpx.HTTPTransport(
                        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]))


def http_one(url, i, tokens):
    start = time.perf_counter()
    first, n = None, 0
    body = {"model": "sluice-tiny-code", "prompt": f"def task_{i}(x):", "max_tokens": tokens,
            "temperature": 0, "ignore_eos": True, "stream": True}
    with HTTP.stream("POST", url + "/v1/completions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                first = first or time.perf_counter()
                n += 1
    return first - start, time.perf_counter() - start, n


def grpc_one(stub, pb, i, tokens):
    start = time.perf_counter()
    first, n = None, 0
    req = pb.GenerateRequest(text=f"def task_{i}(x):", stream=True, sampling=pb.SamplingParams(
        temperature=0, max_tokens=tokens, ignore_eos=True))
    for r in stub.Generate(req, timeout=120):
        if r.token_ids:
            first = first or time.perf_counter()
            n += len(r.token_ids)
    return first - start, time.perf_counter() - start, n


def run(fn, concurrency, requests):
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(fn, range(requests)))
    elapsed = time.perf_counter() - start
    ttft = sorted(r[0] for r in results)
    return {"ttft_p50_ms": 1000 * statistics.median(ttft),
            "ttft_p90_ms": 1000 * ttft[int(0.9 * (len(ttft) - 1))],
            "tokens_per_s": sum(r[2] for r in results) / elapsed}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    pb, pbg = stubs()
    server = SluiceServer(str(pathlib.Path(args.bin) / "sluice"), "--slo-ttft-ms", "0").wait_ready()
    try:
        stub = pbg.GenerationStub(grpc.insecure_channel(server.grpc_target))
        rows = {"http": [], "grpc": []}
        for r in range(args.rounds):
            rows["http"].append(run(lambda i: http_one(server.url, i, args.tokens),
                                    args.concurrency, args.requests))
            rows["grpc"].append(run(lambda i: grpc_one(stub, pb, i, args.tokens),
                                    args.concurrency, args.requests))
            print(f"round {r}: http {rows['http'][-1]}  grpc {rows['grpc'][-1]}", file=sys.stderr)
    finally:
        server.stop()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; tiny model, CPU backend; "
          f"concurrency {args.concurrency}, {args.requests} requests x {args.tokens} tokens, "
          f"median of {args.rounds} rounds")
    print("| protocol | TTFT p50 | TTFT p90 | streamed tokens/s |")
    print("| --- | --- | --- | --- |")
    for name in ("http", "grpc"):
        med = lambda k: statistics.median(x[k] for x in rows[name])
        print(f"| {name} | {med('ttft_p50_ms'):.1f} ms | {med('ttft_p90_ms'):.1f} ms | "
              f"{med('tokens_per_s'):.0f} |")


if __name__ == "__main__":
    main()
