"""Soak: mixed traffic against `sluice serve` through `sluice-gateway` for a long run,
then the accounting. Streaming and non-streaming completions and chat, client aborts
mid-stream, client disconnects, malformed and wrong-typed requests, a tenant past its
quota, overload bursts past the engine's admission limits, and SIGHUP reloads of the
keys file every 30 s. Checks, at the end:

- RSS growth after warm-up < 5% (engine and gateway, sampled every 5 s);
- zero leaked KV blocks (no block held once idle) and nothing running or waiting;
- zero 5xx;
- every request accounted for: the client's count of each answer (200, 400, 401, 429,
  and requests it abandoned) equals the gateway's `sluice_gateway_requests_total`, and
  the engine's `sluice_requests_total` adds up to what the gateway forwarded.

    .venv/bin/python bench/soak/soak.py --bin-dir build/bin --minutes 30

Writes bench/soak/results/soak.json and soak.svg (RSS over time).
"""
import argparse
import asyncio
import collections
import hashlib
import json
import os
import pathlib
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEYS = {"main": "sk-soak-main", "small": "sk-soak-small", "rotating": "sk-soak-rotating"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def write_keys(path, with_rotating):
    tenants = [
        {"name": "main", "key_sha256": hashlib.sha256(KEYS["main"].encode()).hexdigest()},
        {"name": "small", "key_sha256": hashlib.sha256(KEYS["small"].encode()).hexdigest(),
         "requests_per_minute": 30},
    ]
    if with_rotating:
        tenants.append({"name": "rotating",
                        "key_sha256": hashlib.sha256(KEYS["rotating"].encode()).hexdigest()})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"tenants": tenants}))
    tmp.rename(path)


def metrics(url):
    out = collections.Counter()
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def svg_plot(series, path, title):
    """RSS (MiB) against minutes, one line per process."""
    w, h, pad = 720, 320, 50
    t_max = max(t for s in series.values() for t, _ in s) or 1
    v_max = max(v for s in series.values() for _, v in s) * 1.1 or 1
    colors = ["#1f77b4", "#d62728"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="{w / 2}" y="18" text-anchor="middle">{title}</text>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - 10}" y2="{h - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="30" x2="{pad}" y2="{h - pad}" stroke="black"/>',
             f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">minutes</text>',
             f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" '
             f'text-anchor="middle">RSS (MiB)</text>']
    for i in range(5):
        v = v_max * i / 4
        y = h - pad - (h - pad - 30) * i / 4
        parts.append(f'<text x="{pad - 4}" y="{y + 4}" text-anchor="end">{v:.0f}</text>')
        t = t_max * i / 4
        x = pad + (w - pad - 10) * i / 4
        parts.append(f'<text x="{x}" y="{h - pad + 16}" text-anchor="middle">{t:.0f}</text>')
    for (name, pts), color in zip(series.items(), colors):
        xy = " ".join(f"{pad + (w - pad - 10) * t / t_max:.1f},"
                      f"{h - pad - (h - pad - 30) * v / v_max:.1f}" for t, v in pts)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{xy}"/>')
        parts.append(f'<text x="{w - 150}" y="{45 + 16 * list(series).index(name)}" '
                     f'fill="{color}">{name}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts))


class Soak:
    def __init__(self, a, tmp):
        self.a = a
        self.keys = tmp / "keys.json"
        write_keys(self.keys, True)
        self.engine_port, self.gw_port, self.admin_port = free_port(), free_port(), free_port()
        bins = pathlib.Path(a.bin_dir)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        self.engine = subprocess.Popen(
            [str(bins / "sluice"), "serve", "--host", "127.0.0.1", "--port",
             str(self.engine_port), "--grpc-port", "-1", "--max-waiting-requests", "32",
             "--max-num-seqs", "16", "--num-kv-blocks", "512"],
            stdout=open(tmp / "engine.log", "w"), stderr=subprocess.STDOUT, env=env)
        self.gateway = subprocess.Popen(
            [str(bins / "sluice-gateway"), "--listen", f"127.0.0.1:{self.gw_port}",
             "--admin-listen", f"127.0.0.1:{self.admin_port}",
             "--upstream", f"http://127.0.0.1:{self.engine_port}", "--keys", str(self.keys)],
            stdout=open(tmp / "gateway.log", "w"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.gw_port}"
        self.engine_url = f"http://127.0.0.1:{self.engine_port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.client = collections.Counter()  # answer code (or "abandoned") -> count
        self.kinds = collections.Counter()
        self.rss = {"sluice serve": [], "sluice-gateway": []}
        self.rng = random.Random(7)
        self.stop_at = 0.0
        self.reloads = 0

    async def one(self, http):
        rng = self.rng
        kind = rng.choices(["stream", "plain", "chat", "abort", "disconnect", "bad_json",
                            "bad_type", "bad_key", "small_tenant", "rotating"],
                           [40, 20, 10, 8, 4, 3, 3, 2, 6, 4])[0]
        self.kinds[kind] += 1
        key = {"small_tenant": KEYS["small"], "rotating": KEYS["rotating"],
               "bad_key": "sk-nobody"}.get(kind, KEYS["main"])
        headers = {"Authorization": f"Bearer {key}"}
        prompt = "def " + "".join(rng.choice("abcdefgh_") for _ in range(rng.randint(3, 40)))
        body = {"model": "sluice-tiny-code", "prompt": prompt,
                "max_tokens": rng.randint(1, 48), "temperature": rng.choice([0, 0.7])}
        path = "/v1/completions"
        if kind == "chat":
            path = "/v1/chat/completions"
            body = {"model": "sluice-tiny-code", "max_tokens": rng.randint(1, 32),
                    "messages": [{"role": "user", "content": prompt}]}
        content = json.dumps(body)
        if kind == "bad_json":
            content = content[: rng.randint(1, len(content) - 1)]
        if kind == "bad_type":
            content = json.dumps({**body, "max_tokens": "many"})
        stream = kind in ("stream", "abort") or (kind == "rotating" and rng.random() < 0.5)
        if stream:
            content = json.dumps({**json.loads(content), "stream": True})
        try:
            if stream:
                async with http.stream("POST", self.url + path, content=content, headers={
                        **headers, "Content-Type": "application/json"}, timeout=120) as r:
                    if r.status_code != 200:
                        await r.aread()
                        self.client[r.status_code] += 1
                        return
                    chunks = 0
                    async for line in r.aiter_lines():
                        if line.startswith("data: "):
                            chunks += 1
                            if kind == "abort" and chunks >= 2:
                                self.client["abandoned"] += 1
                                return
                    self.client[200] += 1
            else:
                timeout = 0.05 if kind == "disconnect" else 120
                r = await http.post(self.url + path, content=content, timeout=timeout,
                                    headers={**headers, "Content-Type": "application/json"})
                self.client[r.status_code] += 1
        except httpx.TimeoutException:
            self.client["abandoned"] += 1
        except httpx.TransportError as e:
            self.client[f"transport:{type(e).__name__}"] += 1

    async def traffic(self):
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(limits=limits) as http:
            tasks = set()
            next_burst = time.time() + 60
            while time.time() < self.stop_at:
                n = 1
                if time.time() >= next_burst:  # an overload burst
                    n, next_burst = 120, time.time() + 60
                for _ in range(n):
                    t = asyncio.create_task(self.one(http))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                await asyncio.sleep(self.rng.expovariate(self.a.rate))
            await asyncio.gather(*tasks)

    async def chores(self):
        start = time.time()
        next_reload = start + 30
        while time.time() < self.stop_at:
            minutes = (time.time() - start) / 60
            self.rss["sluice serve"].append((minutes, rss_kib(self.engine.pid) / 1024))
            self.rss["sluice-gateway"].append((minutes, rss_kib(self.gateway.pid) / 1024))
            if len(self.rss["sluice serve"]) % 12 == 0:  # every minute
                codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.client.items(), key=str))
                print(f"[soak] {minutes:4.1f}/{self.a.minutes:g} min: {codes}; RSS "
                      f"{self.rss['sluice serve'][-1][1]:.0f} MiB (engine), "
                      f"{self.rss['sluice-gateway'][-1][1]:.1f} MiB (gateway)",
                      file=sys.stderr, flush=True)
            if time.time() >= next_reload:
                self.reloads += 1
                write_keys(self.keys, with_rotating=self.reloads % 2 == 0)
                self.gateway.send_signal(signal.SIGHUP)
                next_reload += 30
            await asyncio.sleep(5)

    def run(self):
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(self.admin_url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                sys.exit("not ready")
            time.sleep(0.2)
        self.stop_at = time.time() + 60 * self.a.minutes

        async def main():
            await asyncio.gather(self.traffic(), self.chores())

        asyncio.run(main())
        time.sleep(2)  # let the last aborts reach the engine
        return self.account()

    def account(self):
        engine, gw = metrics(self.engine_url), metrics(self.admin_url)
        gw_codes = collections.Counter()
        for name, v in gw.items():
            m = re.match(r'sluice_gateway_requests_total\{code="(\d+)",tenant="[^"]*"\}', name)
            if m:
                gw_codes[int(m.group(1))] += int(v)
        outcomes = {o: int(sum(v for n, v in engine.items()
                               if n.startswith("sluice_requests_total{") and f'outcome="{o}"' in n))
                    for o in ("success", "cancelled", "error", "rejected")}
        client = {str(k): v for k, v in sorted(self.client.items(), key=str)}
        five_xx = sum(v for k, v in self.client.items() if isinstance(k, int) and k >= 500)
        five_xx += sum(v for k, v in gw_codes.items() if k >= 500)
        warm = [i for i, (t, _) in enumerate(self.rss["sluice serve"]) if t >= self.a.warmup]
        growth = {}
        for name, pts in self.rss.items():
            base = pts[warm[0]][1] if warm else pts[0][1]
            growth[name] = (pts[-1][1] - base) / base
        # Answers the gateway gave = what the client saw (abandoned ones are 499 there).
        # A request the client gave up on may still have been answered in full before the
        # gateway saw it go (its last bytes in flight): the client's "abandoned" are the
        # gateway's 499s plus some of its 200s. Every other code must match exactly.
        answered = {c: n for c, n in self.client.items() if isinstance(c, int) and c != 200}
        abandoned = self.client.get("abandoned", 0)
        gateway_matches = (all(gw_codes.get(c, 0) == n for c, n in answered.items()) and
                           gw_codes.get(499, 0) <= abandoned and
                           gw_codes.get(200, 0) + gw_codes.get(499, 0) ==
                           self.client.get(200, 0) + abandoned and
                           sum(gw_codes.values()) == sum(self.client.values()))
        # What the gateway forwarded = what the engine answered: all but the gateway's own
        # refusals (bad keys, the small tenant's quota).
        quota_refusals = int(sum(v for n, v in gw.items()
                                 if n.startswith("sluice_gateway_refusals_total{") and
                                 'reason="auth"' not in n))
        forwarded = sum(gw_codes.values()) - gw_codes.get(401, 0) - quota_refusals
        engine_total = sum(outcomes.values())
        result = {
            "minutes": self.a.minutes, "rate": self.a.rate, "kinds": dict(self.kinds),
            "client": client, "gateway_codes": {str(k): v for k, v in sorted(gw_codes.items())},
            "gateway_quota_refusals": quota_refusals, "engine_outcomes": outcomes,
            "gateway_refusals": {n: v for n, v in gw.items()
                                 if n.startswith("sluice_gateway_refusals_total")},
            "engine_rejections": {n: v for n, v in engine.items()
                                  if n.startswith("sluice_requests_rejected_total") and v},
            "forwarded": forwarded, "keys_reloads": self.reloads,
            "rss_mib": {n: {"after_warmup": p[warm[0]][1] if warm else p[0][1],
                            "end": p[-1][1], "max": max(v for _, v in p)}
                        for n, p in self.rss.items()},
            "rss_growth_after_warmup": growth,
            "kv_usage_when_idle": engine["sluice_kv_cache_usage_ratio"],
            "running_when_idle": engine["sluice_num_requests_running"],
            "waiting_when_idle": engine["sluice_num_requests_waiting"],
            "five_xx": five_xx,
        }
        checks = {
            "rss growth < 5%": all(g < 0.05 for g in growth.values()),
            "no KV block held when idle": result["kv_usage_when_idle"] == 0,
            "nothing running or waiting": result["running_when_idle"] == 0 and
            result["waiting_when_idle"] == 0,
            "zero 5xx": five_xx == 0,
            "no transport errors": not any(str(k).startswith("transport") for k in self.client),
            "gateway counts = client counts": gateway_matches,
            "engine answers = gateway forwards": engine_total == forwarded,
            "keys reloaded": self.reloads > 0 and gw.get(
                'sluice_gateway_key_reloads_total{result="ok"}', 0) == self.reloads,
        }
        result["checks"] = checks
        return result

    def stop(self):
        for p in (self.engine, self.gateway):
            p.send_signal(signal.SIGTERM)
        for p in (self.engine, self.gateway):
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", default=str(ROOT / "build/bin"))
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=5, help="minutes before RSS is compared")
    ap.add_argument("--rate", type=float, default=8, help="requests/s between bursts")
    ap.add_argument("--out", default=str(ROOT / "bench/soak/results/soak.json"))
    a = ap.parse_args()
    a.warmup = min(a.warmup, a.minutes / 3)
    with tempfile.TemporaryDirectory() as tmp:
        soak = Soak(a, pathlib.Path(tmp))
        try:
            result = soak.run()
        finally:
            soak.stop()
        result["engine_exit"] = soak.engine.returncode
        result["gateway_exit"] = soak.gateway.returncode
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    svg_plot(soak.rss, out.with_suffix(".svg"),
             f"RSS during a {a.minutes:g}-minute soak (warm-up {a.warmup:g} min)")
    print(json.dumps({k: result[k] for k in ("client", "gateway_codes", "engine_outcomes",
                                             "rss_growth_after_warmup", "checks")}, indent=1))
    sys.exit(0 if all(result["checks"].values()) else 1)


if __name__ == "__main__":
    main()
