"""What reaches the upstream: no header a client named hop-by-hop (attack 13), tenant
salts no outsider can derive (15), and the client's JSON in the client's key order (16)."""
import hashlib
import hmac
import json
import os
import re
import stat

import httpx
import pytest

from security_helpers import MODEL, RecordingUpstream, auth, write_keys


@pytest.fixture
def upstream():
    up = RecordingUpstream()
    yield up
    up.stop()


def header_names(recorded):
    return [k.lower() for k, _ in recorded["headers"]]


def test_headers_named_in_connection_do_not_reach_the_upstream(upstream, gateways, tmp_path):
    keys = write_keys(tmp_path / "keys.json", {"acme": {}})
    gw = gateways(upstream.url, keys)
    r = httpx.post(gw.url + "/v1/completions",
                   json={"model": MODEL, "prompt": "x", "max_tokens": 1},
                   headers={**auth("acme"), "Connection": "keep-alive, X-Secret-Hop",
                            "X-Secret-Hop": "1", "Keep-Alive": "timeout=5", "X-Custom": "kept"},
                   timeout=10)
    assert r.status_code == 200, r.text
    names = header_names(upstream.last())
    assert "x-secret-hop" not in names, (
        f"X-Secret-Hop, named in the client's Connection header, reached the upstream: {names}")
    assert "keep-alive" not in names, names
    assert "x-custom" in names, f"an end-to-end header was dropped: {names}"
    gw.stop()


def salt_of(upstream, gw, tenant="acme"):
    r = httpx.post(gw.url + "/v1/completions",
                   json={"model": MODEL, "prompt": "x", "max_tokens": 1, "cache_salt": "mine"},
                   headers=auth(tenant), timeout=10)
    assert r.status_code == 200, r.text
    return json.loads(upstream.last()["body"])["cache_salt"]


def expected_salt(secret, tenant="acme"):
    return "gw-" + hmac.new(secret, tenant.encode(), hashlib.sha256).hexdigest()[:32]


def test_cache_salts_come_from_a_secret_file(upstream, gateways, tmp_path):
    keys = write_keys(tmp_path / "keys.json", {"acme": {}, "beta": {}})
    derivable = "gw-" + hashlib.sha256(b"sluice-gateway tenant acme").hexdigest()[:32]
    first = tmp_path / "salt-secret"
    assert not first.exists()
    gw = gateways(upstream.url, keys, "--salt-secret-file", str(first))
    assert first.exists(), "--salt-secret-file did not create the missing file"
    mode = stat.S_IMODE(os.stat(first).st_mode)
    assert mode == 0o600, f"the secret file was created with mode {oct(mode)}, not 0600"
    secret = first.read_bytes()
    assert len(secret) >= 16, f"a {len(secret)}-byte secret"
    salt = salt_of(upstream, gw)
    assert re.fullmatch(r"gw-[0-9a-f]{32}", salt), salt
    assert salt != derivable, "the salt is the one anybody can derive from the tenant's name"
    assert salt == expected_salt(secret), (
        f"{salt} is not gw- + hmac_sha256(the file's bytes, tenant)[:32]")
    assert salt_of(upstream, gw, "beta") == expected_salt(secret, "beta") != salt
    gw.stop()

    # The same file after a restart: the same salt, and the file is left as it was.
    gw = gateways(upstream.url, keys, "--salt-secret-file", str(first))
    assert salt_of(upstream, gw) == salt, "the salt changed across a restart with the same file"
    assert first.read_bytes() == secret
    gw.stop()

    # Another missing file: another secret, another salt.
    second = tmp_path / "other-secret"
    gw = gateways(upstream.url, keys, "--salt-secret-file", str(second))
    other = salt_of(upstream, gw)
    assert other != salt, "two secret files gave the same salt"
    assert other == expected_salt(second.read_bytes())
    gw.stop()

    # A file an operator wrote: its bytes exactly as read, trailing newline included.
    given = tmp_path / "given-secret"
    given.write_bytes(b"an operator's secret for this pod, 0123456789\n")
    given.chmod(0o600)
    gw = gateways(upstream.url, keys, "--salt-secret-file", str(given))
    assert salt_of(upstream, gw) == expected_salt(given.read_bytes()), (
        "the salt is not the HMAC keyed with the file's raw bytes (newline included)")
    gw.stop()


def keys_order(value):
    """json.loads(..., object_pairs_hook=list) output -> the key lists of every object, by
    path."""
    orders = {}

    def walk(v, path):
        if isinstance(v, list) and v and all(isinstance(p, tuple) and len(p) == 2 for p in v):
            orders[path] = [k for k, _ in v]
            for k, item in v:
                walk(item, f"{path}.{k}")
        elif isinstance(v, list):
            for i, item in enumerate(v):
                walk(item, f"{path}[{i}]")
    walk(value, "$")
    return orders


def test_the_clients_key_order_reaches_the_upstream(upstream, gateways, tmp_path):
    keys = write_keys(tmp_path / "keys.json", {"acme": {}})
    gw = gateways(upstream.url, keys)
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "call the tool", "name": "zed"}],
        "tools": [{"type": "function", "function": {
            "name": "lookup", "description": "looks things up",
            "parameters": {"type": "object", "properties": {
                "zeta": {"type": "string", "description": "z"},
                "alpha": {"type": "integer", "description": "a"},
                "mid": {"type": "boolean", "description": "m"}},
                "required": ["zeta", "alpha"]}}}],
        "max_tokens": 4,
        "temperature": 0,
    }
    raw = json.dumps(body).encode()
    r = httpx.post(gw.url + "/v1/chat/completions", content=raw,
                   headers={**auth("acme"), "Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text
    got = upstream.last()["body"]
    sent_orders = keys_order(json.loads(raw, object_pairs_hook=list))
    got_orders = keys_order(json.loads(got, object_pairs_hook=list))
    props = "$.tools[0].function.parameters.properties"
    assert got_orders.get(props) == ["zeta", "alpha", "mid"], (
        f"tool parameter order at the upstream: {got_orders.get(props)}; raw body: {got[:400]!r}")
    assert got_orders.get("$.messages[0]") == ["role", "content", "name"], got_orders
    for path, order in sent_orders.items():
        if path == "$":
            continue
        assert got_orders.get(path) == order, (
            f"{path}: sent {order}, upstream got {got_orders.get(path)}")
    top = [k for k in got_orders["$"] if k in sent_orders["$"]]
    assert top == sent_orders["$"], (
        f"top-level order: sent {sent_orders['$']}, got {got_orders['$']}")
    received = json.loads(got)
    salt = received.pop("cache_salt")
    assert received == body, "the body changed on the way (besides cache_salt)"

    # Editing the text in place must still win over a client's duplicate or escaped keys:
    # whichever member a parser keeps, it holds the tenant's salt.
    for raw in (b'{"model": "%s", "cache_salt": "mine1", "prompt": "x", "cache_salt": "mine2", '
                b'"max_tokens": 1}' % MODEL.encode(),
                b'{"model": "%s", "prompt": "x", "cache\\u005fsalt": "mine3", '
                b'"max_tokens": 1}' % MODEL.encode()):
        r = httpx.post(gw.url + "/v1/completions", content=raw,
                       headers={**auth("acme"), "Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 200, r.text
        got = upstream.last()["body"]
        salts = [v for k, v in json.loads(got, object_pairs_hook=list) if k == "cache_salt"]
        assert salts and all(v == salt for v in salts), (
            f"sent {raw!r}: the upstream got cache_salt members {salts} (tenant's: {salt})")
        assert b"mine" not in got, f"a client's salt reached the upstream: {got!r}"
    gw.stop()
