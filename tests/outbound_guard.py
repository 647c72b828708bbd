"""A guard that makes a Python process record and refuse every outbound connection attempt.

``install(folder, record)`` writes a ``sitecustomize.py`` into ``folder``; a process started with ``folder`` on
PYTHONPATH runs it at start-up, and its audit hook (PEP 578) sees every ``socket.connect`` and every name lookup
(``socket.getaddrinfo``, which precedes any connection by name). One to anything but loopback raises OSError, as a
host without a network would, and is appended to ``record`` with its stack first, so an attempt that a library
catches and hides (bitsandbytes does) is still seen by the test.
"""

from __future__ import annotations

import os
from pathlib import Path

SITECUSTOMIZE = """
import os, socket, sys, traceback

_RECORD = os.environ["LOGLLM_TEST_OUTBOUND_RECORD"]
_LOCAL_NAMES = {"localhost", "0.0.0.0", "::", "::1", ""}


def _local(host):
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    return host in _LOCAL_NAMES or host.startswith("127.") or host.startswith("::ffff:127.")


def _refuse(what):
    with open(_RECORD, "a") as record:
        record.write(f"{what}\\n{''.join(traceback.format_stack(limit=12))}\\n")
    raise OSError(101, f"outbound connection refused by the test's guard: {what}")


def _hook(event, args):
    if event == "socket.connect":
        sock, address = args
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
            _refuse(f"connect {address!r}")
    elif event == "socket.getaddrinfo" and not _local(args[0]):
        _refuse(f"getaddrinfo {args[0]!r}")


sys.addaudithook(_hook)
"""


def install(folder: Path, record: Path) -> dict[str, str]:
    """Write the guard; returns the environment variables that turn it on in a child process."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "LOGLLM_TEST_OUTBOUND_RECORD": str(record)}
