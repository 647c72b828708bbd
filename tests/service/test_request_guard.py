"""Cross-site and DNS-rebinding requests against the real ``logllm serve`` are refused, naming why; requests of
clients that are not browsers (no Origin) and of the service's own pages still pass. Without a token the
service will not listen beyond loopback unless --insecure-no-auth says so."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.datastructures import Headers

from service.request_guard import Authority, HostRules, RequestGuard

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0
EVIL = "http://evil.example"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    """``logllm serve --role api`` (no model) on an embedded Redis in a temporary directory."""
    log = tmp_path / f"serve-{time.monotonic_ns()}.log"
    command = [sys.executable, "-m", "service.cli", "serve", "--role", "api", "--redis-data-dir", "", *flags]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOGLLM_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**clean, **(env or {})}
        )
    return process, log


def wait_live(process: subprocess.Popen[bytes], log: Path, url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(url + "/health/live", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"not live after {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    """The service as `logllm serve` starts it by default: loopback, no token (lines read raw, so that any line
    the guard lets through is accepted; the shipped checkpoint would read them as HDFS)."""
    port = free_port()
    process, log = serve(
        tmp_path_factory.mktemp("serve"), "--host", "127.0.0.1", "--port", str(port), "--log-format", "raw"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_live(process, log, url)
        yield url, port, log
    finally:
        stop(process)


def refused(response: httpx.Response, status: int, reason: str, field: str) -> bool:
    body = response.json()
    return response.status_code == status and body["reason"] == reason and body["field"] == field


def test_forged_cross_site_requests_are_refused(loopback: tuple[str, int, Path]) -> None:
    url, _, _ = loopback
    origin = {"Origin": EVIL}
    with httpx.Client(base_url=url) as client:
        # a form or fetch() with text/plain: no preflight, so the browser sends it as it is
        logs = client.post("/logs", content=b"rm -rf / blk_1", headers={**origin, "Content-Type": "text/plain"})
        assert refused(logs, 403, "cross_origin", "Origin"), logs.text
        assert "evil.example" in logs.json()["message"]
        # bodiless POSTs that change what the service believes
        learn = client.post("/patterns/0123456789abcdef/learn", headers=origin)
        assert refused(learn, 403, "cross_origin", "Origin"), learn.text
        close = client.post("/sequences/session:default:blk_1/close", headers=origin)
        assert refused(close, 403, "cross_origin", "Origin"), close.text
        null = client.post("/logs", content=b"x blk_1", headers={"Origin": "null", "Content-Type": "text/plain"})
        assert refused(null, 403, "cross_origin", "Origin"), null.text  # sandboxed frames, file: pages
        # nothing of them was stored: the window they would have opened does not exist
        assert client.post("/sequences/session:default:blk_1/close").status_code == 404


def test_a_rebound_host_name_is_refused(loopback: tuple[str, int, Path]) -> None:
    url, port, _ = loopback
    rebound = {"Host": f"evil.example:{port}"}  # the page's own name, now resolving to 127.0.0.1
    with httpx.Client(base_url=url) as client:
        read = client.get("/anomalies", headers=rebound)
        assert refused(read, 400, "host_not_allowed", "Host"), read.text
        same_origin = client.post(
            "/logs", content=b"x blk_2", headers={**rebound, "Origin": f"http://evil.example:{port}"}
        )
        assert refused(same_origin, 400, "host_not_allowed", "Host"), same_origin.text
        assert client.get("/health/live", headers=rebound).status_code == 200  # probes send the pod's IP


def test_clients_that_are_not_browsers_and_the_own_origin_pass(loopback: tuple[str, int, Path]) -> None:
    url, port, log = loopback
    with httpx.Client(base_url=url) as client:
        plain = client.post("/logs", content=b"line one blk_3", headers={"Content-Type": "text/plain"})  # curl
        assert plain.status_code == 200 and plain.json()["accepted"] == 1
        own = client.post("/logs", json={"lines": [{"message": "two", "session_id": "s4"}]}, headers={"Origin": url})
        assert own.status_code == 200, own.text
        for name in ("localhost", "[::1]"):
            named = client.post(
                "/sequences/session:default:s4/close" if name == "[::1]" else "/logs",
                content=b"three blk_3",
                headers={"Host": f"{name}:{port}", "Origin": f"http://{name}:{port}", "Content-Type": "text/plain"},
            )
            assert named.status_code == 200, named.text
        assert client.get("/anomalies", headers={"Origin": EVIL}).status_code == 200  # reads: CORS keeps them
    assert "no auth token: listening on loopback (127.0.0.1) only" in log.read_text()


def test_without_a_token_it_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    port = free_port()
    process, log = serve(tmp_path, "--host", "0.0.0.0", "--port", str(port))
    assert process.wait(timeout=120) == 2
    out = log.read_text()
    assert "refusing to listen on 0.0.0.0 without a token" in out
    assert "LOGLLM_INSECURE_NO_AUTH=true (--insecure-no-auth)" in out and "LOGLLM_AUTH_TOKEN" in out


def test_insecure_no_auth_from_the_environment_listens_on_every_address(tmp_path: Path) -> None:
    """What the container image does: LOGLLM_HOST=0.0.0.0 with LOGLLM_INSECURE_NO_AUTH=true."""
    port = free_port()
    env = {"LOGLLM_HOST": "0.0.0.0", "LOGLLM_PORT": str(port), "LOGLLM_INSECURE_NO_AUTH": "true"}
    process, log = serve(tmp_path, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_live(process, log, url)
        assert "--insecure-no-auth: listening on 0.0.0.0 WITHOUT a token" in log.read_text()
        with httpx.Client(base_url=url) as client:  # any Host when not on loopback; Origin still checked
            text = {"Content-Type": "text/plain"}
            named = client.post("/logs", content=b"x blk_5", headers={**text, "Host": f"logllm.internal:{port}"})
            assert named.status_code == 200, named.text
            forged = client.post("/logs", content=b"x blk_5", headers={**text, "Origin": EVIL})
            assert refused(forged, 403, "cross_origin", "Origin"), forged.text
    finally:
        stop(process)


@pytest.mark.parametrize(
    ("allowed", "host", "ok"),
    [
        ("", "anything.example", True),
        ("*", "anything.example:1", True),
        ("logllm.example.com", "LOGLLM.example.com:8000", True),
        ("logllm.example.com:443", "logllm.example.com:8000", False),
        (".example.com", "a.b.example.com", True),
        (".example.com", "example.com", True),
        (".example.com", "badexample.com", False),
        ("localhost,127.0.0.1,[::1]", "[::1]:8000", True),
        ("localhost,127.0.0.1,[::1]", "localhost.evil.example", False),
        ("localhost", "local host", False),
    ],
)
def test_host_rules(allowed: str, host: str, ok: bool) -> None:
    guard = RequestGuard(lambda *_: None, allowed)  # type: ignore[arg-type, return-value]
    assert (guard.refusal("GET", "/anomalies", Headers({"host": host})) is None) is ok
    assert HostRules(allowed).any_host is (allowed in ("", "*"))


@pytest.mark.parametrize(
    ("origin", "host", "ok"),
    [
        ("http://localhost:8000", "localhost:8000", True),
        ("https://logllm.example.com", "logllm.example.com", True),  # default ports left out on both sides
        ("https://logllm.example.com:443", "logllm.example.com", True),
        ("http://logllm.example.com", "logllm.example.com:443", False),
        ("https://logs.example.com", "127.0.0.1:8000", True),  # public_url's (behind a proxy that sets Host)
        ("https://ui.example.org", "127.0.0.1:8000", True),  # listed in allowed_hosts
        ("http://evil.example", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),
        ("file://", "127.0.0.1:8000", False),
    ],
)
def test_origin_rules(origin: str, host: str, ok: bool) -> None:
    guard = RequestGuard(lambda *_: None, "*,ui.example.org", "https://logs.example.com/")  # type: ignore[arg-type, return-value]
    assert (guard.refusal("POST", "/logs", Headers({"host": host, "origin": origin})) is None) is ok
    assert Authority.parse(host) is not None
