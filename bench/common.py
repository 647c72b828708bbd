"""What every benchmark shares: the machine it ran on, result files, tables, checkpoints and a service process.

Benchmarks print a table and write ``bench/results/<name>.json`` (small, commit-worthy) with the machine and the
command line in it, so a figure never travels without the hardware and the sizes behind it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("LOGLLM_BENCH_RESULTS") or REPO / "bench" / "results")  # the docs test moves it
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_CHECKPOINT = REPO / "checkpoints" / "default"
UNTRAINED_DIR = Path(tempfile.gettempdir()) / "logllm-bench-untrained-checkpoint"
UNTRAINED_SEED = 1234


# -- machine and results ---------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    return None


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine(with_torch: bool = False) -> dict[str, Any]:
    """CPU model, cores (all and usable by this process), memory, load; torch threads and GPU when asked."""
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": _memory_gib(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if with_torch:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def machine_line(info: dict[str, Any]) -> str:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    threads = f", torch threads {info['torch_threads']}" if "torch_threads" in info else ""
    return (
        f"machine: {info['cpu_model']}, {info['usable_cores']}/{info['logical_cores']} cores usable, "
        f"{info['memory_gib']} GiB, load {info['load_average_1m']}{threads}{gpu}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width table; floats get 4 significant digits."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]
    return "\n".join(lines)


def write_result(name: str, payload: dict[str, Any], info: dict[str, Any]) -> Path:
    """bench/results/<name>.json with the machine, the command and the time beside the figures."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        "benchmark": name,
        "command": " ".join([f"python -m bench.{Path(sys.argv[0]).stem}", *sys.argv[1:]]),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": info,
        **payload,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"result written to {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return path


def base_parser(description: str, default_name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the script works, nothing more")
    parser.add_argument(
        "--name", help=f"result file bench/results/<name>.json (default {default_name}, {default_name}-quick)"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data directory (shared/data)")
    parser.set_defaults(default_name=default_name)
    return parser


def result_name(args: argparse.Namespace) -> str:
    """Quick runs write <name>-quick.json so they never overwrite a full run's figures."""
    return str(args.name or (f"{args.default_name}-quick" if args.quick else args.default_name))


# -- checkpoints ------------------------------------------------------------------------------------------------------
def resolve_checkpoint(value: str | None) -> Path:
    """The given directory; unset: checkpoints/default if present, else an untrained one ('untrained')."""
    if value and value != "untrained":
        return Path(value)
    if value is None and (DEFAULT_CHECKPOINT / "manifest.json").is_file():
        return DEFAULT_CHECKPOINT
    return untrained_checkpoint()


def untrained_checkpoint() -> Path:
    """Fresh LoRA adapters and a seeded random projector: meaningless scores, real speed; made once, reused."""
    if (UNTRAINED_DIR / "manifest.json").is_file():
        return UNTRAINED_DIR
    import torch

    from model.checkpoint import Manifest, build_model, save_checkpoint

    print(f"no checkpoint given and none at {DEFAULT_CHECKPOINT}: saving an untrained one (seed {UNTRAINED_SEED})")
    torch.manual_seed(UNTRAINED_SEED)
    model, enc_info, dec_info = build_model()
    save_checkpoint(model, UNTRAINED_DIR, Manifest(encoder=enc_info, decoder=dec_info))
    return UNTRAINED_DIR


def is_untrained(checkpoint: Path) -> bool:
    return checkpoint.resolve() == UNTRAINED_DIR.resolve()


# -- raw lines with fresh session ids ---------------------------------------------------------------------------------
def hdfs_lines(data: Path) -> list[str]:
    """HDFS_2k's real lines, each with exactly one block id, as templates for synthetic sessions."""
    import re

    lines = (data / "HDFS" / "HDFS_2k.log").read_text(encoding="utf-8").splitlines()
    usable = [line for line in lines if len(re.findall(r"blk_-?\d+", line)) == 1]
    if not usable:
        raise RuntimeError(f"{data / 'HDFS' / 'HDFS_2k.log'}: no line with exactly one block id")
    return usable


def bgl_lines(data: Path) -> list[str]:
    """BGL_2k's real lines in their order: one source's lines for fixed windows."""
    return (data / "BGL" / "BGL_2k.log").read_text(encoding="utf-8").splitlines()


def with_session(line: str, session: str) -> str:
    """The line with its block id replaced by ``session`` (which must itself match ``blk_-?\\d+``)."""
    import re

    return re.sub(r"blk_-?\d+", session, line, count=1)


# -- a real service process -------------------------------------------------------------------------------------------
def checkout(rev: str) -> Path:
    """The repository's files at ``rev`` (``git archive``), exported once under $TMPDIR: the "before" code of a
    bench that runs two versions side by side. A ServiceProcess started with ``repo=`` runs that code."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    target = Path(tempfile.gettempdir()) / f"logllm-checkout-{sha[:12]}"
    if not (target / "logllm_cli.py").is_file():
        partial = target.with_name(target.name + ".partial")
        subprocess.run(["rm", "-rf", str(partial)], check=True)
        partial.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", sha], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive, check=True)
        partial.rename(target)
    return target


class ServiceProcess:
    """``logllm serve`` as a subprocess on a free loopback port; settings go in as LOGLLM_* env vars.

    An embedded Redis (``redis_url`` empty) gets a temporary data directory unless ``redis_data_dir`` is given.
    ``repo``: the code it runs (``python -m logllm_cli`` from there; default this checkout); ``command``: another
    ``logllm serve`` to run from ``repo`` instead (an installed console script).
    """

    def __init__(
        self,
        checkpoint: Path,
        settings: dict[str, Any] | None = None,
        log_path: Path | None = None,
        repo: Path = REPO,
        command: Sequence[str] = (),
    ):
        from service.windows.embedded_redis import free_port

        self.repo = repo
        self.command = list(command) or [sys.executable, "-m", "logllm_cli", "serve"]

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "LOGLLM_CHECKPOINT": str(checkpoint), "LOGLLM_HOST": "127.0.0.1"}
        self.env["LOGLLM_PORT"] = str(self.port)
        self.env["LOGLLM_REDIS_DATA_DIR"] = ""  # an embedded Redis starts empty and leaves nothing behind
        self.env.update({f"LOGLLM_{k.upper()}": str(v) for k, v in (settings or {}).items()})
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="logllm-bench-serve-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, ready_timeout_s: float = 300.0) -> float:
        """Start and wait until /health/ready says ready (model loaded and warm); returns seconds taken."""
        import httpx

        started = time.perf_counter()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.repo,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"logllm serve exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"logllm serve not ready within {ready_timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        """SIGTERM (graceful: finishes the batch in flight), then kill if it lingers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.returncode in (0, -signal.SIGTERM):  # uvicorn re-raises SIGTERM; keep a log only on trouble
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> ServiceProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
