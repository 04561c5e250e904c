"""Per-replica goodput for the autoscaler's threshold, measured on the pod as deployed.

Runs the rendered pod of an overlay (default cpu) here: `sluice serve` and the gateway
sidecar with the Deployment's own arguments and the image's environment, then
sluice-bench through the gateway's port with the Deployment's SLOs, sweeping the offered
rate and bisecting for the highest rate whose SLO attainment is >= 90%. Prints the max
goodput and the threshold to put in components/keda and components/hpa (max goodput x
headroom), and writes the sweep as JSON and SVG.

    .venv/bin/python bench/deploy/max_goodput.py --bin-dir build/bin \\
        --out bench/deploy/results/cpu_pod_max_goodput.json
"""
import argparse
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "deploy"))
from manifests import flag  # noqa: E402
from pod import KEY, Pod  # noqa: E402


def machine():
    model = "unknown CPU"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--overlay", default="cpu")
    ap.add_argument("--bin-dir", default=str(ROOT / "build" / "bin"))
    ap.add_argument("--sweep", default="4,8,12,16,20,24,28")
    ap.add_argument("--search-steps", type=int, default=3)
    ap.add_argument("--num-requests", type=int, default=120)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--headroom", type=float, default=0.8,
                    help="threshold = max goodput x headroom")
    ap.add_argument("--out", default=str(ROOT / "bench/deploy/results/cpu_pod_max_goodput.json"))
    a = ap.parse_args()

    os.environ["SLUICE_SOURCE_ROOT"] = str(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        pod = Pod(pathlib.Path(tmp), a.overlay, a.bin_dir)
        try:
            deadline = time.time() + 300
            while pod.probe(pod.gateway_c, "readinessProbe") != 200:
                if time.time() > deadline or pod.engine.poll() is not None:
                    sys.exit("pod did not become ready:\n" + pod.logs())
                time.sleep(0.2)
            args = pod.engine_c["args"]
            slo_ttft, slo_tpot = flag(args, "slo-ttft-ms"), flag(args, "slo-tpot-ms")
            out = pathlib.Path(a.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            cmd = [str(pathlib.Path(a.bin_dir) / "sluice-bench"), "--url", pod.api_url(),
                   "--api-key", KEY, "--input-len", str(a.input_len),
                   "--output-len", str(a.output_len), "--num-requests", str(a.num_requests),
                   "--sweep", a.sweep, "--search-steps", str(a.search_steps),
                   "--slo-ttft-ms", slo_ttft, "--slo-tpot-ms", slo_tpot, "--seed", "3",
                   "--out", str(out), "--plot", str(out.with_suffix(".svg"))]
            print(f"# {a.overlay} pod on {machine()}", flush=True)
            print("# engine:", " ".join(args), flush=True)
            print("#", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            scrape = httpx.get(f"http://127.0.0.1:{pod.port_of(pod.engine_c, 'metrics')}/metrics",
                               timeout=5).text
        finally:
            pod.stop()
    import json
    result = json.loads(out.read_text())
    best = result.get("max_goodput")
    if not best:
        sys.exit("no offered rate met the attainment target; lower --sweep")
    refused = [l for l in scrape.splitlines()
               if l.startswith("sluice_requests_rejected_total") and not l.endswith(" 0")]
    print(f"max goodput: {best['goodput']:.2f} req/s at an offered {best['request_rate']:.2f} "
          f"req/s (attainment {best['slo_attainment']:.1%}, SLOs TTFT {slo_ttft} ms, "
          f"TPOT {slo_tpot} ms)")
    print(f"autoscaling threshold (x{a.headroom}): {best['goodput'] * a.headroom:.1f} req/s "
          "per replica")
    print("engine refusals during the run:", refused or "none")


if __name__ == "__main__":
    main()
