"""Shared fixtures for end-to-end tests: the built binaries and ../shared fixtures."""
import json
import os
import pathlib

import pytest

ROOT = pathlib.Path(os.environ.get("SLUICE_SOURCE_ROOT", pathlib.Path(__file__).parents[2]))
SHARED = pathlib.Path(os.environ.get("SLUICE_SHARED_DIR", ROOT.parent / "shared"))
BIN = pathlib.Path(os.environ.get("SLUICE_BIN_DIR", ROOT / "build" / "bin"))


@pytest.fixture(scope="session")
def sluice_bin():
    path = BIN / "sluice"
    assert path.exists(), f"{path} is not built"
    return str(path)


@pytest.fixture(scope="session")
def gateway_bin():
    path = BIN / "sluice-gateway"
    assert path.exists(), f"{path} is not built"
    return str(path)


@pytest.fixture(scope="session")
def golden():
    return json.loads((SHARED / "fixtures" / "golden_tiny.json").read_text())
