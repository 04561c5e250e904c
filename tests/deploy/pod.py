"""The rendered CPU pod run as local processes: the engine and the gateway sidecar with
the exact arguments the Deployment gives them, ports moved to free local ones and the
keys file and the cache-salt secret to temporary ones. Used by test_pod.py and
bench/deploy/max_goodput.py."""
import hashlib
import json
import os
import pathlib
import re
import signal
import socket
import subprocess

import httpx

from manifests import container, one, render

BIN_DIR = pathlib.Path(os.environ.get("SLUICE_BIN_DIR", ""))
KEY = "sk-pod-test-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_address():
    """This machine's non-loopback address (the pod IP's stand-in), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def remap(args, ports, keys_path=None, salt_path=None):
    """The container's arguments with every port moved to its free stand-in, and the
    Secret-mounted files to local ones."""
    out = []
    for a in args:
        for old, new in ports.items():
            a = re.sub(rf"([=:]){old}$", rf"\g<1>{new}", a)
            a = re.sub(rf"(127\.0\.0\.1|0\.0\.0\.0):{old}\b", rf"\g<1>:{new}", a)
        if keys_path and a.startswith("--keys="):
            a = f"--keys={keys_path}"
        if salt_path and a.startswith("--salt-secret-file="):
            a = f"--salt-secret-file={salt_path}"
        out.append(a)
    return out


class Pod:
    def __init__(self, tmp_path, overlay="cpu", bin_dir=None):
        _, objects = render(overlay)
        self.overlay = overlay
        bin_dir = pathlib.Path(bin_dir) if bin_dir else BIN_DIR
        self.deployment = one(objects, "Deployment", "sluice")
        spec = self.deployment["spec"]["template"]["spec"]
        self.spec = spec
        self.engine_c, self.gateway_c = container(spec, "engine"), container(spec, "gateway")
        self.ports = {}  # container port -> free local port
        for c in (self.engine_c, self.gateway_c):
            for p in c["ports"]:
                self.ports[p["containerPort"]] = free_port()
        keys = tmp_path / "keys.json"
        keys.write_text(json.dumps({"tenants": [
            {"name": "pod-test", "key_sha256": hashlib.sha256(KEY.encode()).hexdigest()}]}))
        # What the Secret sluice-gateway-salt holds (docs/deployment.md: openssl rand -hex 32).
        salt = tmp_path / "salt-secret"
        salt.write_text(os.urandom(32).hex())
        salt.chmod(0o400)
        self.engine_args = remap(self.engine_c["args"], self.ports)
        self.gateway_args = remap(self.gateway_c["args"], self.ports, keys, salt)
        env = {**os.environ, **{e["name"]: e["value"] for e in self.engine_c.get("env", [])}}
        self.engine_log = open(tmp_path / "engine.log", "w+")
        self.gateway_log = open(tmp_path / "gateway.log", "w+")
        # Native sidecar first, as the kubelet starts it.
        self.gateway = subprocess.Popen(
            [str(bin_dir / pathlib.Path(self.gateway_c["command"][0]).name), *self.gateway_args],
            stdout=self.gateway_log, stderr=subprocess.STDOUT)
        self.engine = subprocess.Popen(
            [str(bin_dir / pathlib.Path(self.engine_c["command"][0]).name), *self.engine_args],
            stdout=self.engine_log, stderr=subprocess.STDOUT, env=env)

    def port_of(self, c, port):
        if isinstance(port, str):
            port = next(p["containerPort"] for p in c["ports"] if p["name"] == port)
        return self.ports[port]

    def probe(self, c, kind, host="127.0.0.1"):
        get = c[kind]["httpGet"]
        url = f"http://{host}:{self.port_of(c, get['port'])}{get['path']}"
        try:
            return httpx.get(url, timeout=c[kind].get("timeoutSeconds", 1)).status_code
        except httpx.TransportError:
            return None

    def api_url(self):
        svc_port = one(render(self.overlay)[1], "Service", "sluice")["spec"]["ports"][0]
        return f"http://127.0.0.1:{self.port_of(self.gateway_c, svc_port['targetPort'])}"

    def logs(self):
        out = ""
        for name, f in (("engine", self.engine_log), ("gateway", self.gateway_log)):
            f.flush()
            f.seek(0)
            out += f"--- {name}\n{f.read()[-3000:]}"
        return out

    def stop(self):
        for p in (self.engine, self.gateway):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


