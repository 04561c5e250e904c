#!/usr/bin/env python3
"""Sluice beside its peers on one machine: the same `sluice-bench` closed-loop load
(streamed completions of synthetic prompts, --input-len in, --output-len out, ignore_eos)
against each server at each concurrency, in interleaved rounds (every server once per
round, so that drift in the machine falls on all alike), then a table of output tok/s,
TTFT p50 and ITL p50 with Sluice's ratio to each peer (the range over rounds), the load
average, and an SVG plot.

Sluice is started here (`build/bin/sluice serve` on the embedded model, or --model);
peers already serving the same model are given by URL:

    .venv/bin/python bench/peers/compare.py --levels 1,8,32 --rounds 3 \\
        --peer vllm=http://127.0.0.1:8001 --peer llama.cpp=http://127.0.0.1:8002

Not part of CI: the peers are large.
"""
import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from server_fixture import SluiceServer  # noqa: E402


def run_level(bench, url, model, concurrency, args, out):
    n = max(args.min_requests, concurrency * args.requests_per_client)
    cmd = [str(bench), "--url", url, "--concurrency", str(concurrency), "--num-requests", str(n),
           "--dataset", "synthetic", "--input-len", str(args.input_len), "--output-len",
           str(args.output_len), "--out", out]
    if model:
        cmd += ["--model", model]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=3600)
    r = json.loads(pathlib.Path(out).read_text())["results"][0]
    return {"out_tok_s": r["output_token_throughput"], "ttft_p50_ms": r["ttft_ms"]["p50"],
            "itl_p50_ms": r["itl_ms"]["p50"], "failed": r["failed"],
            "output_tokens": r["total_output_tokens"], "requests": n}


def svg(results, levels, path):
    """Output tok/s against concurrency, one line per server (the mean over rounds)."""
    w, h, pad = 640, 400, 60
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    top = max(v["out_tok_s"] for runs in results.values() for lvl in runs.values() for v in lvl)
    top = top * 1.1 or 1

    def x(i):
        return pad + i * (w - 2 * pad) / max(1, len(levels) - 1)

    def y(v):
        return h - pad - v / top * (h - 2 * pad)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             'font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
             f'<text x="{w / 2}" y="{h - 20}" text-anchor="middle">concurrency</text>',
             f'<text x="15" y="{h / 2}" transform="rotate(-90 15 {h / 2})" '
             'text-anchor="middle">output tok/s</text>']
    for i, c in enumerate(levels):
        parts.append(f'<text x="{x(i)}" y="{h - pad + 16}" text-anchor="middle">{c}</text>')
    for k in range(5):
        v = top * k / 4
        parts.append(f'<text x="{pad - 6}" y="{y(v) + 4}" text-anchor="end">{v:.0f}</text>')
    for j, (name, runs) in enumerate(results.items()):
        color = colors[j % len(colors)]
        pts = [(x(i), y(sum(r["out_tok_s"] for r in runs[c]) / len(runs[c])))
               for i, c in enumerate(levels)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="' +
                     " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        for a, b in pts:
            parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}"/>')
        parts.append(f'<text x="{w - pad - 100}" y="{pad + 16 * j}" fill="{color}">{name}</text>')
    parts.append("</svg>")
    pathlib.Path(path).write_text("\n".join(parts))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--requests-per-client", type=int, default=3)
    ap.add_argument("--min-requests", type=int, default=16)
    ap.add_argument("--peer", action="append", default=[], help="NAME=URL of a running server")
    ap.add_argument("--model", default="", help="--model for sluice serve (default: embedded)")
    ap.add_argument("--sluice-args", default="--max-num-seqs 32",
                    help="more flags for sluice serve")
    ap.add_argument("--bin-dir", default=str(ROOT / "build" / "bin"))
    ap.add_argument("--out", default="peers.json")
    ap.add_argument("--plot", default="peers.svg")
    args = ap.parse_args()
    levels = [int(c) for c in args.levels.split(",")]
    bench = pathlib.Path(args.bin_dir) / "sluice-bench"
    extra = args.sluice_args.split() + (["--model", args.model] if args.model else [])
    server = SluiceServer(str(pathlib.Path(args.bin_dir) / "sluice"), *extra).wait_ready()
    targets = {"sluice": server.url}
    for p in args.peer:
        name, _, url = p.partition("=")
        targets[name] = url
    results = {name: {c: [] for c in levels} for name in targets}
    loads = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rnd in range(args.rounds):
                for name, url in targets.items():
                    for c in levels:
                        r = run_level(bench, url, "", c, args, os.path.join(tmp, "r.json"))
                        results[name][c].append(r)
                        print(f"round {rnd + 1}/{args.rounds} {name:>10} c={c:<3} "
                              f"{r['out_tok_s']:8.0f} tok/s  TTFT p50 {r['ttft_p50_ms']:7.1f} ms"
                              f"  ITL p50 {r['itl_p50_ms']:6.2f} ms  {r['output_tokens']} tokens"
                              f" of {r['requests'] * args.output_len}, {r['failed']} failed",
                              flush=True)
                loads.append(os.getloadavg()[0])
    finally:
        server.stop()

    def span(vals, fmt):
        return fmt.format(min(vals)) if min(vals) == max(vals) else \
            (fmt + "-" + fmt).format(min(vals), max(vals))

    print(f"\n{platform.node()}, {os.cpu_count()} CPUs, {args.input_len} in / "
          f"{args.output_len} out, load average {min(loads):.2f}-{max(loads):.2f}")
    header = "| concurrency | " + " | ".join(
        f"{n} out tok/s, TTFT p50, ITL p50" for n in targets) + " |"
    print(header)
    print("|" + " --- |" * (len(targets) + 1))
    for c in levels:
        cells = []
        for name in targets:
            runs = results[name][c]
            cell = (span([r["out_tok_s"] for r in runs], "{:.0f}") + ", " +
                    span([r["ttft_p50_ms"] for r in runs], "{:.0f}") + " ms, " +
                    span([r["itl_p50_ms"] for r in runs], "{:.1f}") + " ms")
            if name != "sluice":
                ratios = [s["out_tok_s"] / p["out_tok_s"]
                          for s, p in zip(results["sluice"][c], runs) if p["out_tok_s"] > 0]
                if ratios:
                    cell += " (Sluice " + span(ratios, "{:.2f}") + "x)"
            cells.append(cell)
        print(f"| {c} | " + " | ".join(cells) + " |")
    pathlib.Path(args.out).write_text(json.dumps(
        {"levels": levels, "input_len": args.input_len, "output_len": args.output_len,
         "load_average": loads, "machine": platform.node(), "cpus": os.cpu_count(),
         "results": results}, indent=1))
    svg(results, levels, args.plot)
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
