"""Soak: mixed traffic against `sluice serve` through `sluice-gateway` for a long run,
then the accounting. Streaming and non-streaming completions and chat, client aborts
mid-stream, client disconnects, malformed and wrong-typed requests, a tenant past its
quota, overload bursts past the engine's admission limits, and SIGHUP reloads of the
keys file every 30 s. About a tenth of the traffic is attacks on the gateway itself:
wrong types in the fields it reads, 300-deep nesting, 1 MB unauthenticated bodies, a
tenant asking the public port for admin paths, a 240-sequence fan-out past the tenant's
max_concurrent_sequences, and a tenant past its tokens per minute. Checks, at the end:

- RSS growth after warm-up < 5% (engine and gateway, sampled every 5 s);
- zero leaked KV blocks (no block held once idle) and nothing running or waiting;
- zero 5xx (of any kind: nothing in the soak makes the upstream go away);
- every request accounted for: the client's count of each answer (200, 400, 401, 404,
  413, 429, 5xx, and requests it abandoned) equals the gateway's
  `sluice_gateway_requests_total`; a 1 MB unauthenticated body whose 401 the client
  lost to a connection reset counts as that 401 (and is reported as "unauth_reset");
- the gateway answers the attacks itself (every 400, 401 and 404 is one of its
  refusals), each attack gets the answer it should, and the engine's
  `sluice_requests_total` adds up to what the gateway forwarded (everything but the
  gateway's refusals, `sluice_gateway_refusals_total`).

    .venv/bin/python bench/soak/soak.py --bin-dir build/bin --minutes 30
    .venv/bin/python bench/soak/soak.py --minutes 2 --warmup 0.5 --out /tmp/soak-try.json

Writes bench/soak/results/soak.json and soak.svg (RSS over time).
"""
import argparse
import asyncio
import collections
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time

import httpx

from soak_util import (FANOUT_N, FANOUT_PROMPTS, KEYS, TPM_MAX_TOKENS,
                       free_port, metrics, rss_kib, series, svg_plot, write_keys)

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Request kinds and their weights (per 111). The attack_* ones, about a tenth of the
# traffic, aim at the gateway; everything else is a client as the API expects one.
KINDS = {"stream": 40, "plain": 20, "chat": 10, "abort": 8, "disconnect": 4, "bad_json": 3,
         "bad_type": 3, "bad_key": 2, "small_tenant": 6, "rotating": 4,
         "attack_type": 2, "attack_nested": 1, "attack_unauth_big": 1, "attack_admin_path": 1,
         "attack_fanout": 1.5, "attack_tokens_quota": 4.5}
# Wrong types in fields the gateway reads: it answers 400 naming the field.
WRONG_TYPES = [{"stream": "yes"}, {"stream": 0},
               {"stream": True, "stream_options": {"include_usage": 1}}, {"n": "2"},
               {"max_tokens": "many"}]
NESTING = 300  # levels of arrays in an unknown field; the gateway's limit is 128
BIG_BODY = json.dumps({"model": "sluice-tiny-code", "max_tokens": 8,
                       "prompt": "x" * (1 << 20)})  # 1 MiB, sent without a key
# What each attack must be answered: wrong types, nesting and admin paths are refused by
# the gateway before any quota is looked at (so even in a burst); the fan-out by its
# sequence limit (or, in a burst, concurrency); the tpm tenant gets 200s until its tokens
# run out (or 429 from an overloaded engine).
ATTACK_ANSWERS = {"attack_type": {400}, "attack_nested": {400},
                  "attack_unauth_big": {401, "unauth_reset"}, "attack_admin_path": {404},
                  "attack_fanout": {429}, "attack_tokens_quota": {200, 429}}


class Soak:
    def __init__(self, a, tmp):
        self.a = a
        self.tmp = tmp
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
        # Answer code (or "abandoned", "unsent", "unauth_reset", "transport:...") -> count,
        # in all and by request kind; and the error "type" of every 429, by kind.
        self.client = collections.Counter()
        self.kinds = collections.Counter()
        self.by_kind = collections.defaultdict(collections.Counter)
        self.types_429 = collections.defaultdict(collections.Counter)
        self.unsent = collections.Counter()  # exception -> count
        self.rss = {"sluice serve": [], "sluice-gateway": []}
        self.rng = random.Random(7)
        self.stop_at = 0.0
        self.reloads = 0

    def note(self, kind, answer, response=None):
        self.client[answer] += 1
        self.by_kind[kind][answer] += 1
        if answer == 429 and response is not None:
            try:
                self.types_429[kind][str(response.json()["error"]["type"])] += 1
            except (ValueError, KeyError, TypeError):
                self.types_429[kind]["(no error body)"] += 1

    async def one(self, http):
        rng = self.rng
        kind = rng.choices(list(KINDS), list(KINDS.values()))[0]
        self.kinds[kind] += 1
        key = {"small_tenant": KEYS["small"], "rotating": KEYS["rotating"],
               "bad_key": "sk-nobody", "attack_tokens_quota": KEYS["tpm"],
               "attack_unauth_big": None}.get(kind, KEYS["main"])
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        prompt = "def " + "".join(rng.choice("abcdefgh_") for _ in range(rng.randint(3, 40)))
        body = {"model": "sluice-tiny-code", "prompt": prompt,
                "max_tokens": rng.randint(1, 48), "temperature": rng.choice([0, 0.7])}
        method, path = "POST", "/v1/completions"
        if kind == "chat":
            path = "/v1/chat/completions"
            body = {"model": "sluice-tiny-code", "max_tokens": rng.randint(1, 32),
                    "messages": [{"role": "user", "content": prompt}]}
        # Half the rotating tenant's and the tpm tenant's requests stream (the gateway
        # charges a stream's tokens from the usage chunk it asks the engine for).
        stream = kind in ("stream", "abort") or (
            kind in ("rotating", "attack_tokens_quota") and rng.random() < 0.5)
        if stream:
            body["stream"] = True
        if kind == "attack_tokens_quota":  # 200 tokens each, against 2,000 a minute
            body.update(max_tokens=TPM_MAX_TOKENS, ignore_eos=True)
        elif kind == "attack_fanout":
            body.update(prompt=[f"{prompt}_{i}" for i in range(FANOUT_PROMPTS)], n=FANOUT_N,
                        max_tokens=8)
        elif kind == "attack_type":
            body.update(rng.choice(WRONG_TYPES))
        content = json.dumps(body)
        if kind == "bad_json":
            content = content[: rng.randint(1, len(content) - 1)]
        elif kind == "bad_type":
            content = json.dumps({**body, "max_tokens": "many"})
        elif kind == "attack_nested":
            content = content[:-1] + ', "x_unknown": ' + "[" * NESTING + "]" * NESTING + "}"
        elif kind == "attack_unauth_big":
            content = BIG_BODY
        elif kind == "attack_admin_path":
            method, path, content = "GET", rng.choice(["/metrics", "/version"]), None
            del headers["Content-Type"]
        try:
            if stream:
                async with http.stream(method, self.url + path, content=content,
                                       headers=headers, timeout=120) as r:
                    if r.status_code != 200:
                        await r.aread()
                        self.note(kind, r.status_code, r)
                        return
                    chunks = 0
                    async for line in r.aiter_lines():
                        if line.startswith("data: "):
                            chunks += 1
                            if kind == "abort" and chunks >= 2:
                                self.note(kind, "abandoned")
                                return
                    self.note(kind, 200)
            else:
                timeout = 0.05 if kind == "disconnect" else 120
                r = await http.request(method, self.url + path, content=content,
                                       timeout=timeout, headers=headers)
                self.note(kind, r.status_code, r)
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            # Given up before a byte was sent (a 50 ms client, in a burst): the gateway
            # never had the request, so it is no part of the comparison.
            self.note(kind, "unsent")
            self.unsent[type(e).__name__] += 1
        except httpx.TimeoutException:
            self.note(kind, "abandoned")
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as e:
            # The gateway answers a keyless 1 MB body from its headers, discards the rest
            # and closes: a client still sending may see the close as a reset instead of
            # the 401. The gateway counted its 401 all the same.
            self.note(kind, "unauth_reset" if kind == "attack_unauth_big" else
                      f"transport:{type(e).__name__}")
        except httpx.TransportError as e:
            self.note(kind, f"transport:{type(e).__name__}")

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
            if self.exited():
                self.stop_at = 0  # traffic stops; run() says who exited
                return
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

    def exited(self):
        """The process that has exited, with its log's tail, or None."""
        for p, name, log in ((self.engine, "sluice serve", "engine.log"),
                             (self.gateway, "sluice-gateway", "gateway.log")):
            if p.poll() is not None:
                tail = (self.tmp / log).read_text(errors="replace")[-3000:]
                return f"{name} exited with {p.returncode} during the soak; its log ends:\n{tail}"
        return None

    def run(self):
        deadline = time.time() + 120
        while True:
            if self.exited():
                sys.exit(self.exited())
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
        if self.exited():
            sys.exit(self.exited())
        return self.account()

    def account(self):
        engine, gw = metrics(self.engine_url), metrics(self.admin_url)
        gw_codes = collections.Counter()
        for labels, v in series(gw, "sluice_gateway_requests_total"):
            gw_codes[int(labels["code"])] += int(v)
        refusals = collections.Counter()  # (tenant, reason) -> count
        for labels, v in series(gw, "sluice_gateway_refusals_total"):
            refusals[labels.get("tenant", ""), labels.get("reason", "")] += int(v)
        by_reason = collections.Counter()
        for (_, reason), v in refusals.items():
            by_reason[reason] += v
        outcomes = {o: int(sum(v for labels, v in series(engine, "sluice_requests_total")
                               if labels.get("outcome") == o))
                    for o in ("success", "cancelled", "error", "rejected")}
        client = {str(k): v for k, v in sorted(self.client.items(), key=str)}
        five_xx = sum(v for k, v in self.client.items() if isinstance(k, int) and k >= 500)
        five_xx += sum(v for k, v in gw_codes.items() if k >= 500)
        warm = [i for i, (t, _) in enumerate(self.rss["sluice serve"]) if t >= self.a.warmup]
        growth = {}
        for name, pts in self.rss.items():
            base = pts[warm[0]][1] if warm else pts[0][1]
            growth[name] = (pts[-1][1] - base) / base
        # Answers the gateway gave = what the client saw, code by code. Three allowances:
        # - a request the client gave up on before it was sent (unsent) never reached it;
        # - a keyless 1 MB body the client saw reset is a 401 the gateway counted (it
        #   answered, then closed while the client was still sending): a 401 here;
        # - abandoned ones are 499s there, but a request the client gave up on may still
        #   have been answered in full before the gateway saw it go (its last bytes in
        #   flight): the client's "abandoned" are the gateway's 499s plus some of its
        #   200s.
        # Every other code must match exactly.
        seen = collections.Counter(self.client)
        seen.pop("unsent", 0)
        resets = seen.pop("unauth_reset", 0)
        seen[401] += resets
        abandoned = seen.get("abandoned", 0)
        codes = sorted({c for c in seen if isinstance(c, int)} | set(gw_codes))
        accounting = {str(c): {"client": seen.get(c, 0), "gateway": gw_codes.get(c, 0)}
                      for c in codes}
        accounting["abandoned"] = {"client": abandoned}
        gateway_matches = (all(gw_codes.get(c, 0) == seen.get(c, 0)
                               for c in codes if c not in (200, 499)) and
                           gw_codes.get(499, 0) <= abandoned and
                           gw_codes.get(200, 0) + gw_codes.get(499, 0) ==
                           seen.get(200, 0) + abandoned and
                           sum(gw_codes.values()) == sum(seen.values()))
        # What the gateway forwarded = what the engine answered: all but the gateway's own
        # refusals (bad keys, quotas, bodies it will not pass on, paths it does not serve).
        forwarded = sum(gw_codes.values()) - sum(refusals.values())
        engine_total = sum(outcomes.values())
        # The gateway answers these itself, each one a refusal it counts: a request that
        # got one of these codes never reached the engine.
        own = {400: "invalid", 401: "auth", 404: "not_found"}
        refuses_itself = all(gw_codes.get(c, 0) == by_reason.get(r, 0) for c, r in own.items())
        by_kind = {k: {str(c): n for c, n in sorted(v.items(), key=str)}
                   for k, v in sorted(self.by_kind.items())}
        attacks_answered = {k: sorted(map(str, set(self.by_kind.get(k, {})) - allowed))
                            for k, allowed in ATTACK_ANSWERS.items()}
        result = {
            "minutes": self.a.minutes, "rate": self.a.rate, "kinds": dict(self.kinds),
            "client": client, "unauth_resets": resets, "unsent": dict(self.unsent),
            "by_kind": by_kind,
            "types_429": {k: dict(v) for k, v in sorted(self.types_429.items())},
            "gateway_codes": {str(k): v for k, v in sorted(gw_codes.items())},
            "accounting": accounting,
            "gateway_refusals": {f"{t}/{r}": v for (t, r), v in sorted(refusals.items())},
            "gateway_refusals_by_reason": dict(sorted(by_reason.items())),
            "engine_outcomes": outcomes,
            "engine_rejections": {n: v for n, v in engine.items()
                                  if n.startswith("sluice_requests_rejected_total") and v},
            "forwarded": forwarded, "keys_reloads": self.reloads,
            "unexpected_attack_answers": {k: v for k, v in attacks_answered.items() if v},
            "rss_mib": {n: {"after_warmup": p[warm[0]][1] if warm else p[0][1],
                            "end": p[-1][1], "max": max(v for _, v in p)}
                        for n, p in self.rss.items()},
            "rss_growth_after_warmup": growth,
            "kv_usage_when_idle": engine["sluice_kv_cache_usage_ratio"],
            "running_when_idle": engine["sluice_num_requests_running"],
            "waiting_when_idle": engine["sluice_num_requests_waiting"],
            "five_xx": five_xx,
        }
        tpm = self.by_kind.get("attack_tokens_quota", {})
        checks = {
            "rss growth < 5%": all(g < 0.05 for g in growth.values()),
            "no KV block held when idle": result["kv_usage_when_idle"] == 0,
            "nothing running or waiting": result["running_when_idle"] == 0 and
            result["waiting_when_idle"] == 0,
            "zero 5xx": five_xx == 0,
            "no transport errors": not any(str(k).startswith("transport") for k in self.client),
            "gateway counts = client counts": gateway_matches,
            "gateway answers 400, 401, 404 itself": refuses_itself,
            "attacks answered as expected": not result["unexpected_attack_answers"],
            "fan-out held by max_concurrent_sequences":
                self.kinds["attack_fanout"] == 0 or refusals["main", "sequences"] > 0,
            "tpm tenant served, then held to its tokens per minute":
                tpm.get(200, 0) > 0 and refusals["tpm", "tokens"] > 0,
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
    print(json.dumps({k: result[k] for k in (
        "client", "gateway_codes", "gateway_refusals_by_reason", "forwarded", "engine_outcomes",
        "unexpected_attack_answers", "rss_growth_after_warmup", "checks")}, indent=1))
    sys.exit(0 if all(result["checks"].values()) else 1)


if __name__ == "__main__":
    main()
