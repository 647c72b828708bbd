"""The wheel, installed outside the source tree, starts every role until /health/ready.

The other tests import the packages from the checkout, where every file is at hand; a user of ``pip install`` and
the images get only what the wheel carries. A data file the package data forgets (``service/patterns/*.lua`` once)
fails here. The wheel goes into a fresh venv in a temporary folder with ``--no-deps``; its dependencies come from
this venv's site-packages through a ``.pth`` line, which puts them after the venv's own site-packages and does not
run this venv's editable hook, so ``model``, ``service`` and ``training`` resolve to the wheel (asserted).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.common import REPO, ServiceProcess
from service.windows.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.slow
SOURCES = ["pyproject.toml", "README.md", "logllm_cli.py", "model", "service", "training"]  # what the image copies
PACKAGES = ["logllm_cli", "model", "service", "training"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary folder holding ``venv/`` (the wheel installed) and ``checkpoint/`` (a copy of the shipped one)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)],
        check=True,
        cwd=root,
    )
    (wheel,) = (root / "dist").glob("logllm-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, cwd=root)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)], check=True, cwd=root)
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "zz_logllm_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    shutil.copytree(REPO / "checkpoints" / "default", root / "checkpoint")
    shutil.rmtree(source)
    return root


def outside_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("LOGLLM_")}


def serve(installed: Path, settings: dict[str, str]) -> ServiceProcess:
    process = ServiceProcess(
        installed / "checkpoint",
        settings,
        repo=installed,
        command=[str(installed / "venv" / "bin" / "logllm"), "serve"],
    )
    process.env = {**outside_env(), **{k: v for k, v in process.env.items() if k.startswith("LOGLLM_")}}
    if settings.get("role") == "worker":
        process.env["LOGLLM_WORKER_PORT"] = str(process.port)
    return process


def test_the_packages_resolve_to_the_installed_wheel(installed: Path) -> None:
    code = f"import json, importlib; print(json.dumps({{n: importlib.import_module(n).__file__ for n in {PACKAGES}}}))"
    python = installed / "venv" / "bin" / "python"
    found = json.loads(
        subprocess.run(
            [python, "-c", code], check=True, capture_output=True, text=True, cwd=installed, env=outside_env()
        ).stdout
    )
    for name, where in found.items():
        assert Path(where).is_relative_to(installed / "venv"), f"{name} imported from {where}, not the wheel"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server.url


@pytest.mark.parametrize("role", ["all", "api", "worker"])
def test_every_role_starts_from_the_wheel(installed: Path, role: str, redis_url: str) -> None:
    settings = {"role": role, "device": "cpu"}
    if role != "all":  # all runs its own embedded Redis, as a user's first `logllm serve` does
        settings["redis_url"] = redis_url
    process = serve(installed, settings)
    process.start(ready_timeout_s=600)
    process.stop()
