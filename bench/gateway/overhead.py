"""What the gateway adds to latency: sluice-bench against an upstream that answers at once,
directly and through sluice-gateway, alternating, at a fixed concurrency. Prints TTFT and
E2E percentiles of both paths and their differences (the gateway's added latency).

  .venv/bin/python bench/gateway/overhead.py [--bin build/bin] [--concurrency 16]
"""
import argparse
import asyncio
import hashlib
import json
import os
import pathlib
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHUNKS = 8


async def handle(reader, writer):
    """A minimal OpenAI-style upstream: per request on a keep-alive connection, streams
    CHUNKS events at once."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(CHUNKS):
                ev = ('data: {"choices":[{"index":0,"text":"t%d","finish_reason":null}]}\n\n' % i)
                writer.write(b"%x\r\n%s\r\n" % (len(ev), ev.encode()))
            usage = ('data: {"choices":[],"usage":{"prompt_tokens":16,"completion_tokens":%d,'
                     '"total_tokens":%d}}\n\ndata: [DONE]\n\n' % (CHUNKS, CHUNKS + 16))
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(usage), usage.encode()))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


def serve_mock(port, ready):
    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        ready.set()
        async with server:
            await server.serve_forever()
    asyncio.run(main())


def bench(bin_dir, url, key, concurrency, rate, n, out):
    load = ["--request-rate", str(rate)] if rate else ["--concurrency", str(concurrency)]
    cmd = [str(bin_dir / "sluice-bench"), "--url", url, *load,
           "--num-requests", str(n), "--input-len", "16", "--output-len", str(CHUNKS),
           "--out", out]
    env = {**os.environ, "OPENAI_API_KEY": key} if key else dict(os.environ)
    env.pop("OPENAI_API_KEY", None) if not key else None
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    level = json.load(open(out))["results"][0]
    return level


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--request-rate", type=float, default=0,
                    help="open-loop Poisson arrivals at this rate instead of --concurrency")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    bin_dir = pathlib.Path(args.bin)
    up_port, gw_port, admin_port = free_port(), free_port(), free_port()
    ready = threading.Event()
    threading.Thread(target=serve_mock, args=(up_port, ready), daemon=True).start()
    ready.wait()
    key = "sk-bench-overhead"
    tmp = tempfile.mkdtemp()
    keys = pathlib.Path(tmp) / "keys.json"
    keys.write_text(json.dumps({"tenants": [{"name": "bench", "key_sha256":
                                             hashlib.sha256(key.encode()).hexdigest()}]}))
    gw = subprocess.Popen([str(bin_dir / "sluice-gateway"), "--listen", f"127.0.0.1:{gw_port}",
                           "--admin-listen", f"127.0.0.1:{admin_port}",
                           "--upstream", f"http://127.0.0.1:{up_port}", "--keys", str(keys)],
                          stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    rows = {"direct": [], "gateway": []}
    try:
        for r in range(args.rounds):
            for name, url, k in (("direct", f"http://127.0.0.1:{up_port}", ""),
                                 ("gateway", f"http://127.0.0.1:{gw_port}", key)):
                level = bench(bin_dir, url, k, args.concurrency, args.request_rate, args.requests,
                              f"{tmp}/{name}{r}.json")
                rows[name].append(level)
                print(f"round {r} {name:8} req/s {level['request_throughput']:8.1f}  TTFT p50 "
                      f"{level['ttft_ms']['p50']:6.2f} p99 {level['ttft_ms']['p99']:6.2f}  E2E "
                      f"p50 {level['e2e_ms']['p50']:6.2f} p99 {level['e2e_ms']['p99']:6.2f} ms",
                      file=sys.stderr)
    finally:
        gw.terminate()
        gw.wait()
    med = lambda name, metric, q: sorted(l[metric][q] for l in rows[name])[len(rows[name]) // 2]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          + (f"Poisson {args.request_rate} req/s" if args.request_rate
             else f"concurrency {args.concurrency}")
          + f", {args.requests} requests x {args.rounds} rounds")
    print("| metric | direct | via gateway | added |")
    print("| --- | --- | --- | --- |")
    for metric in ("ttft_ms", "e2e_ms"):
        for q in ("p50", "p99"):
            d, g = med("direct", metric, q), med("gateway", metric, q)
            print(f"| {metric[:-3].upper()} {q} | {d:.2f} ms | {g:.2f} ms | {g - d:+.2f} ms |")


if __name__ == "__main__":
    main()
