"""Fixtures of the gateway security suite: the e2e suite's binaries (sluice_bin,
gateway_bin, re-exported from tests/e2e/conftest.py), one shared engine, and factories for
gateways and for engines a case may kill or stop. Every process a case starts is gone when
the case ends, whatever its outcome."""
import importlib.util
import pathlib
import signal
import sys

import pytest

HERE = pathlib.Path(__file__).parent
E2E = pathlib.Path(__file__).parents[1] / "e2e"
sys.path.insert(0, str(E2E))
sys.path.insert(0, str(HERE))

_spec = importlib.util.spec_from_file_location("sluice_e2e_conftest", E2E / "conftest.py")
_e2e_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e_conftest)
sluice_bin = _e2e_conftest.sluice_bin
gateway_bin = _e2e_conftest.gateway_bin

from security_helpers import SecGateway, start_engine  # noqa: E402
from server_fixture import stop_process  # noqa: E402


@pytest.fixture(scope="session")
def engine(sluice_bin):
    """One `sluice serve` for the cases that neither kill nor stop it."""
    server = start_engine(sluice_bin)
    yield server
    code = server.stop()
    assert code == 0, f"the shared engine exited with {code}:\n{server.logs()}"


@pytest.fixture
def gateways(gateway_bin):
    """start(upstream_url, keys_path, *flags) -> SecGateway. A case ends with gw.stop()
    (which asserts exit status 0); whatever a failed case left running is killed here."""
    started = []

    def start(upstream_url, keys_path, *extra):
        return SecGateway(gateway_bin, upstream_url, keys_path, *extra, registry=started)
    yield start
    for gw in started:
        if gw.proc.poll() is None:
            stop_process(gw.proc, 10)


@pytest.fixture
def own_engines(sluice_bin):
    """start(*flags, port=None) -> SluiceServer: engines a case may SIGKILL or SIGSTOP."""
    started = []

    def start(*extra, port=None):
        server = start_engine(sluice_bin, *extra, port=port, registry=started)
        return server
    yield start
    for server in started:
        if server.proc.poll() is None:
            try:
                server.proc.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
            stop_process(server.proc, 10)
