"""The Dockerfiles' runtime stages install exactly what the built binaries link, and run
the binaries as a non-root user. (No Docker engine here: the images themselves are not
built in CI; hadolint lints them in test_manifests.py.)"""
import os
import pathlib
import re
import subprocess

import pytest

from manifests import DEPLOY

BIN_DIR = pathlib.Path(os.environ.get("SLUICE_BIN_DIR", ""))
BINARIES = ["sluice", "sluice-gateway", "sluice-bench"]
IN_BASE_IMAGE = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}  # debian:12-slim has them
CUDA_LIBS = {"libcudart": "cuda-cudart-", "libcublas": "libcublas-", "libcublasLt": "libcublas-"}


def stages(dockerfile):
    text = (DEPLOY / "docker" / dockerfile).read_text().replace("\\\n", " ")
    parts = re.split(r"^FROM ", text, flags=re.M)[1:]
    return [("FROM " + p) for p in parts]


def apt_packages(stage):
    pkgs = set()
    for m in re.finditer(r"apt-get install ([^&]*)", stage):
        pkgs |= {w.strip('"') for w in m.group(1).split() if not w.startswith("-")}
    return pkgs


def linked_libraries():
    """Shared libraries of the built binaries: soname -> Debian package (None if not from one)."""
    libs = {}
    for b in BINARIES:
        out = subprocess.run(["ldd", str(BIN_DIR / b)], check=True, capture_output=True,
                             text=True).stdout
        for line in out.splitlines():
            m = re.match(r"\s*(\S+) => (\S+)", line)
            if not m:
                continue
            soname, path = m.groups()
            real = os.path.realpath(path)
            pkg = None
            for candidate in (real, path, real.replace("/usr/lib/", "/lib/", 1)):
                r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
                if r.returncode == 0:
                    pkg = r.stdout.split(":")[0]
                    break
            libs[soname] = pkg
    return libs


@pytest.fixture(scope="module")
def libs():
    if not all((BIN_DIR / b).exists() for b in BINARIES):
        pytest.fail(f"binaries missing in SLUICE_BIN_DIR={BIN_DIR}")
    return linked_libraries()


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_runtime_stage_installs_every_linked_debian_library(dockerfile, libs):
    runtime = stages(dockerfile)[-1]
    installed = apt_packages(runtime)
    assert installed, "the runtime stage installs no packages"
    needed = {pkg for soname, pkg in libs.items() if pkg} - IN_BASE_IMAGE
    assert needed, libs
    missing = needed - installed
    assert not missing, f"{dockerfile}: runtime stage lacks {sorted(missing)}"
    # Nothing built for compiling: no -dev packages, no compiler.
    assert not {p for p in installed if p.endswith("-dev") or p in ("g++", "cmake", "gcc")}
    unknown = [s for s, pkg in libs.items() if pkg is None and not s.startswith(tuple(CUDA_LIBS))
               and not s.startswith("linux-vdso")]
    assert not unknown, f"libraries from no Debian package: {unknown}"


def test_cuda_image_carries_the_cuda_runtime_the_build_links(libs):
    runtime = stages("Dockerfile.cuda")[-1]
    installed = apt_packages(runtime)
    for prefix, pkg in CUDA_LIBS.items():
        if any(s.startswith(prefix + ".so") for s in libs):
            assert any(p.startswith(pkg) for p in installed), (prefix, sorted(installed))
    assert any(p.startswith("cuda-cudart-") for p in installed)
    assert any(p.startswith("libcublas-") for p in installed)
    assert not any(p.startswith("cuda-cudart-") for p in apt_packages(stages("Dockerfile.cpu")[-1]))


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_images_are_multi_stage_and_run_as_non_root(dockerfile):
    s = stages(dockerfile)
    assert len(s) >= 2 and " AS build" in s[0]
    users = re.findall(r"^USER (\S+)", s[-1], flags=re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert "COPY --from=build /opt/sluice /opt/sluice" in s[-1]


def test_cpu_image_bakes_in_the_tiny_model_and_cuda_image_mounts_one():
    cpu, cuda = stages("Dockerfile.cpu"), stages("Dockerfile.cuda")
    assert "COPY models/sluice-tiny-code models/sluice-tiny-code" in cpu[0]
    assert "SLUICE_MODEL=/opt/sluice/share/sluice/models/sluice-tiny-code" in cpu[-1]
    assert 'VOLUME ["/models"]' in cuda[-1] and '"--model", "/models"' in cuda[-1]
