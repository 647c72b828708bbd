"""Tests that run a Debian binary (scripts/ci_packages.sh installs them in CI): skipped with the reason on a
developer's machine without it, but a failure under CI=true, where a skip would hide a missing install step."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def missing_binary(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def require_binary(*names: str) -> str:
    """The first of ``names`` on PATH."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    missing_binary(f"{' / '.join(names)} not installed (Debian: see scripts/ci_packages.sh)")
