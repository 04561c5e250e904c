"""Starts `sluice serve` on a free loopback port and stops it (SIGTERM) afterwards."""
import os
import signal
import socket
import subprocess
import time

import httpx


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, timeout):
    """SIGTERM, then SIGKILL if it has not exited within `timeout` s; its exit status
    (-9 when killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class SluiceServer:
    def __init__(self, binary, *args, env=None, port=None):
        self.port = port or free_port()
        self.grpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.log = open(f"/tmp/sluice-serve-{self.port}.log", "w+")
        # Under ThreadSanitizer the gRPC front stays off: Debian's gRPC is not built with
        # TSan, so its own synchronisation is invisible to it and it reports false races.
        grpc = "-1" if os.environ.get("SLUICE_TEST_NO_GRPC") else str(self.grpc_port)
        self.proc = subprocess.Popen(
            [binary, "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--grpc-port", grpc, *args],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, self.logs()
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server did not become ready:\n" + self.logs())

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-5000:]

    def stop(self, timeout=60):
        return stop_process(self.proc, timeout)
