"""Helpers of the gateway security suite: keys, a gateway that registers itself before it
waits for its admin port, a recording upstream, raw-socket HTTP and SSE parsing."""
import hashlib
import http.server
import json
import os
import select
import socket
import subprocess
import threading
import time

import httpx

from server_fixture import SluiceServer, free_port
from test_gateway import Gateway, metric  # noqa: F401  (metric is re-exported)

MODEL = "sluice-tiny-code"
HOST = "127.0.0.1"


def key_of(tenant):
    return f"sk-sec-{tenant}-{hashlib.sha256(tenant.encode()).hexdigest()[:16]}"


def auth(tenant):
    return {"Authorization": f"Bearer {key_of(tenant)}"}


def write_keys(path, tenants):
    """A keys file: {tenant: {limits}}; each tenant's key is key_of(tenant)."""
    path.write_text(json.dumps({"tenants": [
        {"name": name, "key_sha256": hashlib.sha256(key_of(name).encode()).hexdigest(), **limits}
        for name, limits in tenants.items()]}))
    return path


def start_engine(binary, *extra, port=None, registry=None):
    server = SluiceServer(binary, "--slo-ttft-ms", "0", *extra, port=port)
    if registry is not None:
        registry.append(server)
    return server.wait_ready(timeout=60)


class SecGateway(Gateway):
    """test_gateway.Gateway, registered for clean-up before it waits (an unknown flag makes
    an old gateway exit at once, which fails the case with the gateway's own message)."""

    def __init__(self, binary, upstream_url, keys_path, *extra, registry=None):
        self.port, self.admin_port = free_port(), free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.admin = f"http://{HOST}:{self.admin_port}"
        self.log = open(f"/tmp/sluice-gateway-{self.port}.log", "w+")
        self.args = [binary, "--listen", f"{HOST}:{self.port}",
                     "--admin-listen", f"{HOST}:{self.admin_port}", "--upstream", upstream_url,
                     "--keys", str(keys_path), *extra]
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        if registry is not None:
            registry.append(self)
        deadline = time.time() + 20
        while time.time() < deadline:
            assert self.proc.poll() is None, (
                f"sluice-gateway exited with {self.proc.returncode} at startup "
                f"(flags {list(extra)}):\n{self.logs()}")
            try:
                httpx.get(self.admin + "/health", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise TimeoutError("sluice-gateway did not open its admin port:\n" + self.logs())

    def alive(self):
        return self.proc.poll() is None

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc/PID/status")


def wait_for(check, seconds, what, step=0.05):
    """Polls check() until it returns a truthy value (returned) or `seconds` pass (raises)."""
    deadline = time.time() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(what)
        time.sleep(step)


# --- A recording upstream ----------------------------------------------------------------

class RecordingUpstream:
    """Records every request exactly as received (method, path, header list in order, raw
    body bytes) and answers completions and chat completions with a fixed usage; a body with
    "stream": true gets three events, a usage chunk, [DONE], then (after done_delay_s) the
    end of the chunked body."""

    def __init__(self, done_delay_s=0.0):
        self.lock = threading.Lock()
        self.requests = []
        self.done_delay_s = done_delay_s
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def read_body(self):
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return body
                        body += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def record(self, body):
                with outer.lock:
                    outer.requests.append({"method": self.command, "path": self.path,
                                           "headers": list(self.headers.items()),
                                           "body": body})

            def do_GET(self):
                self.record(b"")
                if self.path.startswith("/v1/models"):
                    self.answer(200, {"object": "list", "data": [{"id": MODEL}]})
                else:
                    self.answer(200, {"ready": True})

            def do_POST(self):
                body = self.read_body()
                self.record(body)
                usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict) and parsed.get("stream") is True:
                    return self.stream(usage)
                if self.path.startswith("/v1/chat/completions"):
                    self.answer(200, {"object": "chat.completion", "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "length"}], "usage": usage})
                else:
                    self.answer(200, {"object": "text_completion", "choices": [
                        {"index": 0, "text": "ok", "finish_reason": "length"}], "usage": usage})

            def stream(self, usage):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                events = [{"choices": [{"index": 0, "text": f"t{i}", "finish_reason": None}]}
                          for i in range(3)] + [{"choices": [], "usage": usage}]
                try:
                    for e in [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]:
                        self.wfile.write(f"{len(e):x}\r\n{e}\r\n".encode())
                        self.wfile.flush()
                    time.sleep(outer.done_delay_s)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def last(self, method="POST"):
        with self.lock:
            for r in reversed(self.requests):
                if r["method"] == method:
                    return r
        raise AssertionError(f"the upstream received no {method} request")

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --- Raw sockets -------------------------------------------------------------------------

def connect(port, timeout=5):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def readable(sock, seconds):
    return bool(select.select([sock], [], [], max(0.0, seconds))[0])


def read_response(sock, timeout=5.0):
    """Reads one HTTP response (headers, and a Content-Length body when there is one).
    Returns (status or None, headers {lower name: value}, body bytes, how it ended) where
    the end is "complete", "eof", "reset" or "timeout"."""
    deadline = time.time() + timeout
    data = b""
    end = "timeout"
    while time.time() < deadline:
        if not readable(sock, deadline - time.time()):
            break
        try:
            piece = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            end = "reset"
            break
        if not piece:
            end = "eof"
            break
        data += piece
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            headers = parse_headers(head)
            length = headers.get("content-length")
            if length is not None and len(rest) >= int(length):
                end = "complete"
                break
    head, sep, body = data.partition(b"\r\n\r\n")
    if not head:
        return None, {}, b"", end
    try:
        status = int(head.split(b"\r\n", 1)[0].split()[1])
    except (IndexError, ValueError):
        status = None
    return status, parse_headers(head), body, end


def parse_headers(head):
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return headers


def sse_events(raw):
    """Splits an SSE byte stream into events: a list of {"event": name or None, "data": str}."""
    events = []
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        events.append({"event": event, "data": "\n".join(data)})
    return events


def post_json_raw(url, body_bytes, headers=None, timeout=30):
    return httpx.post(url, content=body_bytes,
                      headers={"Content-Type": "application/json", **(headers or {})},
                      timeout=timeout)


def error_of(response):
    """The error object of an OpenAI-style error answer (AssertionError when it is not one)."""
    try:
        body = response.json()
    except ValueError as e:
        raise AssertionError(f"{response.status_code}: not JSON: {response.text[:300]!r}") from e
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), (
        f"{response.status_code}: no error object: {response.text[:300]!r}")
    return body["error"]


def sanitizer():
    return bool(os.environ.get("SLUICE_TEST_SANITIZER"))
