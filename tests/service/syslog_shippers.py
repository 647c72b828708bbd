"""The syslog shippers the intake tests run: util-linux ``logger``, rsyslog and syslog-ng, as Debian ships them.

rsyslog and syslog-ng-core conflict as Debian packages, so scripts/ci_packages.d/syslog.sh unpacks both under
``SYSLOG_SHIPPERS_DIR`` (default /opt/logllm-syslog) instead of installing them; a binary on PATH is used when
there is one. Also here: HDFS_2k's lines, a scorer that can be held (to fill the ready queue), and waiting for
the service's accepted count.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from service.app import WARMUP_SEQUENCE
from tests.binaries import missing_binary
from tests.service.live_app import LiveApp, RecordingScorer

SHIPPERS_DIR = Path(os.environ.get("SYSLOG_SHIPPERS_DIR", "/opt/logllm-syslog"))


FIRST = 2  # lines shipped before the rest: two sessions that close on idle and fill the ready queue (cap 2)


def held(sources: str) -> dict[str, object]:
    """Settings under which FIRST lines fill the ready queue (once they close on idle) while the scorer is held."""
    return {"partitions": 1, "max_ready_queue": FIRST, "sources": sources}


def hdfs_2k(shared_data: Path, count: int = 2000) -> list[str]:
    return (shared_data / "HDFS" / "HDFS_2k.log").read_text(encoding="utf-8").splitlines()[:count]


def log_file(tmp_path: Path, lines: Sequence[str]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "hdfs.log"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


class HeldScorer(RecordingScorer):
    """A recording scorer that blocks while held: closed windows stay queued, so the ready-queue cap is reached."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()

    def score(self, sequences: Sequence[Sequence[str]]) -> list[float]:
        if [list(s) for s in sequences] != WARMUP_SEQUENCE:
            self.open.wait(timeout=120)
        return super().score(sequences)


def metric(app: LiveApp, name: str, **labels: str) -> float:
    """One sample of the app's /metrics (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in app.metrics().splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and ",".join(sorted((match[1] or "").split(","))).strip(",") == want:
            return float(match[2])
    return 0.0


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def wait_accepted(app: LiveApp, fmt: str, count: int, timeout: float = 60.0) -> float:
    """Seconds until the service counted ``count`` lines accepted in format ``fmt``."""
    started = time.monotonic()
    wait_for(lambda: metric(app, "logllm_lines_ingested_total", format=fmt) >= count, timeout, f"{count} {fmt} lines")
    return time.monotonic() - started


def logger_binary() -> str:
    return shutil.which("logger") or missing_binary("logger not installed (Debian bsdutils)")


def _unpacked(name: str, relative: str) -> Path | None:
    found = shutil.which(name)
    if found:
        return Path(found)
    path = SHIPPERS_DIR / relative
    return path if path.is_file() else None


@contextmanager
def rsyslog(tmp_path: Path, config: str) -> Iterator[subprocess.Popen[bytes]]:
    """rsyslogd in the foreground on ``config`` (``{work}`` filled in), its modules from its own package."""
    binary = _unpacked("rsyslogd", "rsyslog/usr/sbin/rsyslogd")
    if binary is None:
        missing_binary(f"rsyslogd not found on PATH nor under {SHIPPERS_DIR} (scripts/ci_packages.d/syslog.sh)")
    modules = binary.parent.parent / "lib" / "x86_64-linux-gnu" / "rsyslog"
    if not modules.is_dir():
        modules = next(Path("/usr/lib").glob("*/rsyslog"), modules)
    work = tmp_path / "rsyslog"
    work.mkdir()
    conf = work / "rsyslog.conf"
    conf.write_text(config.replace("{work}", str(work)))
    args = [str(binary), "-n", "-f", str(conf), "-i", str(work / "pid"), "-M", str(modules)]
    with _running(args, work / "out.log", {}) as process:
        yield process


@contextmanager
def syslog_ng(tmp_path: Path, config: str) -> Iterator[subprocess.Popen[bytes]]:
    """syslog-ng in the foreground on ``config``, its modules and library from its own package."""
    binary = _unpacked("syslog-ng", "syslog-ng/usr/sbin/syslog-ng")
    if binary is None:
        missing_binary(f"syslog-ng not found on PATH nor under {SHIPPERS_DIR} (scripts/ci_packages.d/syslog.sh)")
    lib = binary.parent.parent / "lib" / "syslog-ng"
    modules = next(lib.glob("3.*"), lib)
    work = tmp_path / "syslog-ng"
    work.mkdir()
    conf = work / "syslog-ng.conf"
    conf.write_text(config)
    args = [
        str(binary), "-F", "--no-caps", "-f", str(conf), f"--module-path={modules}", "-R", str(work / "persist"),
        "-p", str(work / "pid"), "-c", str(work / "ctl"),
    ]  # fmt: skip
    with _running(args, work / "out.log", {"LD_LIBRARY_PATH": str(lib)}) as process:
        yield process


@contextmanager
def _running(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.returncode not in (0, -15, 143):
            print(log.read_text(errors="replace"))
