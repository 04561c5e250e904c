"""Renders deploy/ overlays and reads the objects the tests check."""
import os
import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(os.environ.get("SLUICE_SOURCE_ROOT", pathlib.Path(__file__).parents[2]))
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
TOOLS = pathlib.Path(sys.executable).parent  # the venv's bin/: kubectl, checkov, ...


def tool(name):
    path = TOOLS / name
    assert path.exists(), f"{name} not in {TOOLS}: run scripts/install_deps.sh"
    return str(path)


_rendered = {}


def render(overlay):
    """The overlay's objects, as `kubectl kustomize` renders them."""
    if overlay not in _rendered:
        out = subprocess.run([tool("kubectl"), "kustomize", str(DEPLOY / "overlays" / overlay)],
                             check=True, capture_output=True, text=True).stdout
        _rendered[overlay] = (out, [d for d in yaml.safe_load_all(out) if d])
    return _rendered[overlay]


def find(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or
                                                          o["metadata"]["name"] == name)]
    return found


def one(objects, kind, name):
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def container(pod_spec, name):
    for c in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


def flag(args, name):
    """The value of --name=VALUE (or --name VALUE) in an argument list, or None."""
    for i, a in enumerate(args):
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
        if a == f"--{name}" and i + 1 < len(args):
            return args[i + 1]
    return None


def port_number(c, port):
    """A probe's or policy's port (number or name) as the container's port number."""
    if isinstance(port, int):
        return port
    for p in c.get("ports", []):
        if p["name"] == port:
            return p["containerPort"]
    raise AssertionError(f"container {c['name']} declares no port named {port!r}")
