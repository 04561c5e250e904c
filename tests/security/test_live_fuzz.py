"""Live fuzz of the public port (attack 17): a running engine behind a gateway takes N
mutated completion and chat requests (N: $SLUICE_LIVE_FUZZ_COUNT, else 1,500 under a
sanitizer ($SLUICE_TEST_SANITIZER), else 10,000), 8 at a time. Bodies are valid seeds with
fields replaced by JSON of random types (nulls, huge numbers, strings, nesting up to 200
levels) or broken as text (invalid UTF-8, duplicate keys, truncation, NaN, deep brackets);
headers get odd content types, doubled Authorization, near-8 KB values, Connection tokens;
about 5% carry no key or a wrong one. Every case is drawn from random.Random(f"{seed}:{i}")
($SLUICE_LIVE_FUZZ_SEED, default 17): a failure names the case that reproduces it.

Asserted: the gateway stays up; every answer is 2xx or 4xx; no transport error but a few
timeouts; nothing without a valid key is served; streams that start end with [DONE];
afterwards the engine is idle (running and waiting gauges 0) and the gateway exits 0."""
import collections
import concurrent.futures
import json
import os
import random
import threading
import time

import httpx

from security_helpers import MODEL, key_of, metric, sanitizer, write_keys

SEED = int(os.environ.get("SLUICE_LIVE_FUZZ_SEED", "17"))


def fuzz_count():
    if os.environ.get("SLUICE_LIVE_FUZZ_COUNT"):
        return int(os.environ["SLUICE_LIVE_FUZZ_COUNT"])
    return 1500 if sanitizer() else 10000


FIELDS = ["model", "prompt", "messages", "max_tokens", "max_completion_tokens", "stream",
          "stream_options", "n", "temperature", "top_p", "top_k", "min_p", "seed", "stop",
          "stop_token_ids", "echo", "logprobs", "top_logprobs", "ignore_eos", "cache_salt",
          "priority", "tools", "tool_choice", "presence_penalty", "frequency_penalty",
          "repetition_penalty", "user", "logit_bias", "response_format",
          "chat_template_kwargs", "add_generation_prompt", "best_of", "suffix", "x"]
INTS = [0, 1, 2, 3, 4, -1, -2**31, 2**31, 2**32, 2**53 + 1, 2**63, -2**63 - 1, 2**64, 10**30,
        -10**30]
FLOATS = [0.0, -0.0, 0.5, 1.5, 3.7, 2.0, -1e-9, 1e30, 1e308, -1e308, 5e-324]
STRINGS = ["", "yes", "true", "null", "0", "x", "def f(x):", "é😀 ünï", "\u0000", "\ufffd",
           "[[[{{{", '"', "\\", "data: [DONE]\n\n", "\r\n\r\nHTTP/1.1 200 OK", "user",
           "assistant", "system", "tool", "function", "sluice-tiny-code", "a" * 1000,
           "{{ raise_exception('x') }}", "{% for x in range(99999999) %}{% endfor %}"]
PROMPTS = ["def f(x):", "import os\n", "class A:", "# hello", "x = 1", "for i in range(3):"]
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28", b"ok\x80ok", b"\xc0\xaf",
            b"\xf8\x88\x80\x80\x80"]
CONTENT_TYPES = ["text/plain", "application/json; charset=utf-16", "",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=zz",
                 "application/json" * 60, "*/*", "application/json; charset=latin1",
                 "APPLICATION/JSON"]
CONNECTION = ["close", "keep-alive", "keep-alive, X-Fuzz-Hop", "Upgrade", "TE", "close, close",
              "Content-Length", "Authorization", "keep-alive, keep-alive"]


def scalar(rng):
    kind = rng.random()
    if kind < 0.1:
        return None
    if kind < 0.2:
        return rng.random() < 0.5
    if kind < 0.45:
        return rng.choice(INTS)
    if kind < 0.6:
        return rng.choice(FLOATS)
    return rng.choice(STRINGS)


def nested(rng, depth):
    value = scalar(rng)
    for _ in range(depth - 1):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def random_json(rng, depth=0):
    kind = rng.random()
    if depth < 3 and kind < 0.15:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 3 and kind < 0.3:
        return {rng.choice(FIELDS + ["role", "content", "include_usage", "type", "k"]):
                random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if kind < 0.36:
        return nested(rng, rng.choice([2, 5, 64, 126, 127, 128, 129, 200]))
    return scalar(rng)


def seed_body(rng, chat):
    body = {"model": MODEL, "max_tokens": rng.randint(1, 4),
            "temperature": rng.choice([0, 0, 0.7, 1.0])}
    if chat:
        body["messages"] = [{"role": "user", "content": rng.choice(PROMPTS)}]
        body["max_completion_tokens"] = rng.randint(1, 4)
    else:
        body["prompt"] = rng.choice(PROMPTS)
    if rng.random() < 0.3:
        body["stream"] = True
        if rng.random() < 0.5:
            body["stream_options"] = {"include_usage": True}
    return body


def mutate(rng, body, chat):
    ops = []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.8:
            if body and rng.random() < 0.5:
                k = rng.choice(list(body) + FIELDS)
            else:
                k = rng.choice(FIELDS)
            body[k] = random_json(rng)
            ops.append(f"set {k}")
        elif body:
            k = rng.choice(list(body))
            del body[k]
            ops.append(f"del {k}")
    # Bounded work: a chat request with neither limit would generate to the context's end.
    if chat and body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        body["max_tokens"] = rng.randint(1, 4)
    return ops


def raw_mutation(rng, body, chat):
    """The body as bytes, maybe broken as text; returns (bytes, description)."""
    text_field = ("messages" if chat else "prompt")
    kind = rng.choice(["utf8", "dupkey", "truncate", "not_object", "number", "tail", "bom",
                       "deep", "escape", "comment"])
    if kind == "utf8":
        if chat:
            body["messages"] = [{"role": "user", "content": "@@BAD@@"}]
        else:
            body["prompt"] = "@@BAD@@"
        return json.dumps(body).encode().replace(b"@@BAD@@", rng.choice(BAD_UTF8)), \
            f"invalid UTF-8 in {text_field}"
    text = json.dumps(body).encode()
    if kind == "dupkey":
        k = rng.choice(list(body) + ["stream", "max_tokens", "model", "stream_options", "n"])
        dup = b'"%s": %s' % (k.encode(), json.dumps(random_json(rng)).encode())
        if len(text) > 2:
            return text[:-1] + b", " + dup + b"}", f"duplicate key {k}"
        return b"{" + dup + b"}", f"duplicate key {k}"
    if kind == "truncate":
        cut = rng.randrange(len(text))
        return text[:cut], f"truncated at {cut}"
    if kind == "not_object":
        return rng.choice([b"[]", b"5", b'"x"', b"null", b"true", b"[{}]", b"", b" ", b"{"]), \
            "not an object"
    if kind == "number":
        lit = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1" * 400, b"1e99999", b"-",
                          b"01", b"+1", b"0x10", b"1.", b".5", b"-0"])
        k = rng.choice(["max_tokens", "temperature", "n", "seed", "top_p"])
        return text[:-1] + b', "%s": %s}' % (k.encode(), lit), f"{k}: {lit[:12]!r}"
    if kind == "tail":
        tail = rng.choice([b"}", b" x", b"\x00", b"{}", b"\n\n", b",", b"]"])
        return text + tail, "trailing bytes"
    if kind == "bom":
        return b"\xef\xbb\xbf" + text, "BOM"
    if kind == "deep":
        d = rng.choice([127, 128, 1000, 50000])
        return text[:-1] + b', "x": ' + b"[" * d + b"]" * d + b"}", f"x nested {d} deep"
    if kind == "escape":
        esc = rng.choice([b'"\\ud800"', b'"\\u0000"', b'"\\udfff\\ud800"', b'"\\x41"',
                          b'"\\uZZZZ"'])
        return text[:-1] + b', "%s": %s}' % (text_field.encode() if not chat else b"user", esc), \
            f"escape {esc!r}"
    return b"/* c */" + text, "comment"


def build_case(i):
    rng = random.Random(f"{SEED}:{i}")
    chat = rng.random() < 0.4
    path = ("/v1/chat/completions" if chat else "/v1/completions")
    if rng.random() < 0.05:
        path = "/v1/completions" if chat else "/v1/chat/completions"
    body = seed_body(rng, chat)
    ops = mutate(rng, body, chat) if rng.random() < 0.85 else []
    if rng.random() < 0.35:
        raw, what = raw_mutation(rng, body, chat)
        ops.append(what)
    else:
        raw = json.dumps(body).encode()

    valid = f"Bearer {key_of('fuzz')}"
    headers = [("Authorization", valid), ("Content-Type", "application/json")]
    authed = True
    if rng.random() < 0.05:
        authed = False
        bad = rng.choice([None, "Bearer sk-wrong", "Basic Zm9vOmJhcg==", "Bearer",
                          f"Bearer {key_of('fuzz')}x", f"bearer{key_of('fuzz')}", "Bearer  sk-x"])
        headers = [h for h in headers if h[0] != "Authorization"]
        if bad is not None:
            headers.append(("Authorization", bad))
        ops.append(f"auth {bad!r}")
    for _ in range(rng.randint(0, 3)):
        extra = rng.random()
        if extra < 0.2:
            headers = [h for h in headers if h[0] != "Content-Type"]
            ct = rng.choice(CONTENT_TYPES)
            headers.append(("Content-Type", ct))
            ops.append(f"content-type {ct[:30]!r}")
        elif extra < 0.35 and authed:
            other = rng.choice(["Bearer sk-wrong", valid, "Basic x"])
            headers.insert(rng.choice([0, len(headers)]), ("Authorization", other))
            ops.append("doubled Authorization")
        elif extra < 0.5:
            headers.append(("X-Fuzz-Pad", "p" * rng.randint(1000, 7900)))
            ops.append("padded header")
        elif extra < 0.65:
            c = rng.choice(CONNECTION)
            headers.append(("Connection", c))
            ops.append(f"connection {c!r}")
        elif extra < 0.75:
            headers += [("X-Sluice-Tenant", "other"), ("X-Forwarded-For", "10.0.0.1")]
            ops.append("spoofed tenant headers")
        elif extra < 0.85:
            headers.append(("Accept", rng.choice(["text/event-stream", "*/*", "x/y", ""])))
            ops.append("accept")
        elif extra < 0.9:
            headers.append(("X-Latin", b"\xe9t\xe9"))
            ops.append("latin-1 header")
        elif extra < 0.95:
            headers.append(("Content-Encoding", rng.choice(["gzip", "br", "identity"])))
            ops.append("content-encoding")
        elif not any(h[0] == "Host" for h in headers):
            headers.append(("Host", "evil.example"))
            ops.append("host")
    return {"i": i, "path": path, "body": raw, "headers": headers, "authed": authed,
            "what": f"#{i} {path} " + "; ".join(ops)}


def test_live_fuzz_keeps_the_gateway_up_and_the_engine_clean(own_engines, gateways, tmp_path):
    n = fuzz_count()
    server = own_engines()
    keys = write_keys(tmp_path / "keys.json", {"fuzz": {}})
    gw = gateways(server.url, keys)
    lock = threading.Lock()
    statuses, unauthed = collections.Counter(), collections.Counter()
    timeouts, transport, bad_status, served_unauthed, bad_streams = [], [], [], [], []
    local = threading.local()
    clients = []

    def client():
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=30)
            with lock:
                clients.append(local.client)
        return local.client

    def one(i):
        case = build_case(i)
        try:
            r = client().post(gw.url + case["path"], content=case["body"],
                              headers=case["headers"])
        except httpx.TimeoutException as e:
            with lock:
                timeouts.append(f"{case['what']}: {e!r}")
            return
        except httpx.HTTPError as e:
            with lock:
                transport.append(f"{case['what']}: {e!r}")
            return
        with lock:
            statuses[r.status_code] += 1
            if not case["authed"]:
                unauthed[r.status_code] += 1
            if not (200 <= r.status_code < 300 or 400 <= r.status_code < 500):
                bad_status.append(f"{case['what']}: {r.status_code} {r.text[:200]!r}")
            if not case["authed"] and 200 <= r.status_code < 300:
                served_unauthed.append(f"{case['what']}: {r.status_code}")
            if (r.status_code == 200
                    and r.headers.get("content-type", "").startswith("text/event-stream")
                    and (b"data: [DONE]" not in r.content or b"event: error" in r.content)):
                bad_streams.append(f"{case['what']}: ...{r.content[-200:]!r}")

    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))
    took = time.time() - start
    for c in clients:
        c.close()
    print(f"live fuzz, seed {SEED}: {n} cases in {took:.1f} s ({n / took:.0f}/s); statuses "
          f"{dict(sorted(statuses.items()))} (without a valid key: "
          f"{dict(sorted(unauthed.items()))}); "
          f"{len(timeouts)} timeouts, {len(transport)} transport errors")
    assert gw.alive(), f"the gateway died ({gw.proc.returncode}):\n{gw.logs()}"
    assert not transport, (f"{len(transport)} transport errors (the first ones):\n"
                           + "\n".join(transport[:10]))
    assert len(timeouts) <= 3, f"{len(timeouts)} timeouts:\n" + "\n".join(timeouts[:10])
    assert not bad_status, (f"{len(bad_status)} answers outside 2xx/4xx:\n"
                            + "\n".join(bad_status[:10]))
    assert not served_unauthed, "served without a valid key:\n" + "\n".join(served_unauthed[:10])
    assert not bad_streams, (f"{len(bad_streams)} streams without [DONE] or with an error:\n"
                             + "\n".join(bad_streams[:10]))
    assert sum(statuses.values()) + len(timeouts) == n

    def idle():
        return (metric(server.url, "sluice_num_requests_running") == 0
                and metric(server.url, "sluice_num_requests_waiting") == 0
                and metric(gw.admin, "sluice_gateway_requests_in_flight") == 0)
    deadline = time.time() + 10
    while not idle():
        assert time.time() < deadline, (
            "the engine did not return to idle within 10 s: running "
            f"{metric(server.url, 'sluice_num_requests_running')}, waiting "
            f"{metric(server.url, 'sluice_num_requests_waiting')}, gateway in flight "
            f"{metric(gw.admin, 'sluice_gateway_requests_in_flight')}")
        time.sleep(0.1)
    gw.stop()
    assert server.stop() == 0, server.logs()
