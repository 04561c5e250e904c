"""Bodies the gateway reads must never kill it: fields of the wrong type (attack 1) and
JSON nested deep enough to overflow a recursive parser or serialiser (attack 2) are 400s
with OpenAI's error object, the engine's wording, while other tenants go on."""
import json
import threading
import time

import httpx

from security_helpers import MODEL, auth, error_of, post_json_raw, sanitizer, write_keys

BASE = {"model": MODEL, "prompt": "def f(x):", "max_tokens": 2, "temperature": 0}

# (fields replaced in BASE, the `param` the 400 must name); None: a 200.
WRONG_TYPES = [
    ({"stream": None}, None),
    ({"stream": "yes"}, "stream"),
    ({"stream": 0}, "stream"),
    ({"stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
    ({"stream": True, "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
    ({"stream_options": "x"}, "stream_options"),
    ({"stream": True, "stream_options": "x"}, "stream_options"),
    ({"n": "2"}, "n"),
    ({"max_tokens": "many"}, "max_tokens"),
    ({"prompt": 5}, "prompt"),
]


def stream_in_background(url, headers, body):
    """Streams `body` in a thread; returns (thread, state) with state["first"] set once the
    first bytes arrived and state["raw"] / state["error"] / state["finished_at"] at the end."""
    state = {"raw": b"", "error": None, "first": threading.Event(), "finished_at": None}

    def run():
        try:
            with httpx.stream("POST", url + "/v1/completions", json=body, headers=headers,
                              timeout=60) as r:
                state["status"] = r.status_code
                for piece in r.iter_raw():
                    state["raw"] += piece
                    state["first"].set()
        except httpx.HTTPError as e:
            state["error"] = repr(e)
        finally:
            state["finished_at"] = time.time()
            state["first"].set()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, state


def test_wrong_field_types_are_400s_naming_the_field_and_the_gateway_survives(
        engine, gateways, tmp_path):
    keys = write_keys(tmp_path / "keys.json", {"acme": {}, "other": {}})
    gw = gateways(engine.url, keys)
    # Another tenant's long stream is in flight through the same gateway all along.
    thread, stream = stream_in_background(
        gw.url, auth("other"), {**BASE, "max_tokens": 1000, "ignore_eos": True, "stream": True})
    assert stream["first"].wait(30), "the other tenant's stream did not start"
    assert stream["error"] is None and stream["status"] == 200, stream

    problems = []
    for fields, param in WRONG_TYPES:
        body = {**BASE, **fields}
        direct = httpx.post(engine.url + "/v1/completions", json=body, timeout=30)
        try:
            via = httpx.post(gw.url + "/v1/completions", json=body, headers=auth("acme"),
                             timeout=30)
        except httpx.TransportError as e:
            problems.append(f"{fields}: no answer from the gateway ({e!r}); "
                            f"gateway alive: {gw.alive()}")
            continue
        if param is None:
            if direct.status_code != 200 or via.status_code != 200:
                problems.append(f"{fields}: expected 200 (null is no value); engine "
                                f"{direct.status_code}, gateway {via.status_code} {via.text[:200]}")
            continue
        if via.status_code != 400 or direct.status_code != 400:
            problems.append(f"{fields}: expected 400 from both; engine {direct.status_code}, "
                            f"gateway {via.status_code} {via.text[:200]}")
            continue
        err, engine_err = error_of(via), error_of(direct)
        missing = {"message", "type", "param", "code"} - set(err)
        if missing:
            problems.append(f"{fields}: the gateway's error object lacks {missing}: {err}")
        if err.get("type") != "invalid_request_error":
            problems.append(f"{fields}: type {err.get('type')!r}, not invalid_request_error")
        if err.get("param") != param or engine_err.get("param") != param:
            problems.append(f"{fields}: param: gateway {err.get('param')!r}, engine "
                            f"{engine_err.get('param')!r}, expected {param!r}")
        if err.get("message") != engine_err.get("message"):
            problems.append(f"{fields}: message {err.get('message')!r} is not the engine's "
                            f"{engine_err.get('message')!r}")
    attack_done = time.time()
    assert gw.alive(), (f"the gateway died ({gw.proc.returncode}):\n{gw.logs()}\n"
                        + "\n".join(problems))
    # 1,000 tokens: a few seconds here, a minute or more under ThreadSanitizer.
    thread.join(300 if sanitizer() else 60)
    assert not thread.is_alive(), "the other tenant's stream never finished"
    assert stream["error"] is None, f"the other tenant's stream broke: {stream['error']}"
    assert stream["raw"].rstrip().endswith(b"data: [DONE]"), (
        f"the other tenant's stream did not end with [DONE]: ...{stream['raw'][-300:]!r}")
    assert stream["finished_at"] >= attack_done, (
        "the other tenant's stream was over before the attack ended (the check is void)")
    assert not problems, "\n".join(problems)
    r = httpx.post(gw.url + "/v1/completions", json=BASE, headers=auth("acme"), timeout=30)
    assert r.status_code == 200, r.text
    gw.stop()


def nested(depth_of_x, prompt="def f(x):"):
    """A completion body whose field "user" (accepted, never read) holds `depth_of_x`
    nested arrays: the document nests 1 + depth_of_x levels in total (the outer object is
    level 1)."""
    return (json.dumps({**BASE, "prompt": prompt, "max_tokens": 1})[:-1]
            + ', "user": ' + "[" * depth_of_x + "]" * depth_of_x + "}").encode()


def is_nesting_error(r):
    if r.status_code != 400:
        return False
    message = error_of(r).get("message") or ""
    return "128" in message


def test_deep_nesting_is_a_400_naming_the_limit_and_the_gateway_survives(
        engine, gateways, tmp_path):
    keys = write_keys(tmp_path / "keys.json", {"acme": {}})
    gw = gateways(engine.url, keys)
    problems, messages = [], {}
    for name, body in (("80000 deep", nested(80000)), ("129 in total", nested(128))):
        try:
            via = post_json_raw(gw.url + "/v1/completions", body, auth("acme"))
        except httpx.TransportError as e:
            problems.append(f"{name}: the gateway gave no answer ({e!r}); exit status "
                            f"{gw.proc.poll()}:\n{gw.logs()}")
            via = None
        if via is not None:
            if not is_nesting_error(via):
                problems.append(f"{name}: the gateway answered {via.status_code} "
                                f"{via.text[:200]}, not a 400 naming the nesting limit 128")
            else:
                err = error_of(via)
                if err.get("type") != "invalid_request_error" or not (
                        {"message", "param", "code"} <= set(err)):
                    problems.append(f"{name}: the gateway's error object: {err}")
                messages[name] = err["message"]
        direct = post_json_raw(engine.url + "/v1/completions", body)
        if not is_nesting_error(direct):
            problems.append(f"{name}: the engine answered {direct.status_code} "
                            f"{direct.text[:200]}, not a 400 naming the nesting limit 128")
    assert not problems, "\n".join(problems)
    # 128 levels in total pass the nesting check (other checks may still refuse them), and
    # brackets inside a string are text, not nesting.
    for name, body in (("128 in total", nested(127)),
                       ("brackets in a string", nested(1, prompt="[" * 400 + "{" * 400))):
        for where, url, headers in (("engine", engine.url, {}), ("gateway", gw.url, auth("acme"))):
            r = post_json_raw(url + "/v1/completions", body, headers)
            assert r.status_code in (200, 400), f"{name} via {where}: {r.status_code} {r.text}"
            assert not is_nesting_error(r), f"{name} via {where} was refused as too deep: {r.text}"
        assert r.status_code == 200, f"{name} via the gateway: {r.status_code} {r.text}"
    print("nesting refusals:", messages)
    assert gw.alive()
    r = httpx.post(gw.url + "/v1/completions", json=BASE, headers=auth("acme"), timeout=30)
    assert r.status_code == 200, r.text
    gw.stop()
