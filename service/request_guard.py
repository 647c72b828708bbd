"""Requests a browser may send on someone else's behalf are refused before any route runs.

Two attacks reach a service that answers without a token: a web page open in an operator's browser POSTs to
it (``text/plain`` and bodiless POSTs need no CORS preflight), and DNS rebinding points the page's own name at
127.0.0.1, so the browser sees one origin. Two checks stop them:
- Host: the ``Host`` header must be an allowed name (``allowed_hosts``); a rebound name is not. ``logllm serve``
  bound to a loopback address allows loopback names only unless told otherwise (``loopback_hosts``). The
  health probes are exempt (kubelet sends the pod's IP; they change nothing and tell little).
- Origin: a state-changing request (POST, PUT, PATCH, DELETE) that carries an ``Origin`` must come from the
  service itself (the same host and port as its ``Host``, or ``public_url``'s) or from an allowed host.
  Browsers send ``Origin`` on every cross-origin POST; clients that are not browsers (curl, shippers) send none
  and pass.
Refusals are ``{reason, message, field}`` like every other error: 400 ``host_not_allowed``, 403 ``cross_origin``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.http_errors import error_response, shorten
from service.settings import ServiceSettings

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXEMPT_PATHS = frozenset({"/health/live", "/health/ready"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9_.-]+|\[[0-9a-f:.]+\]")  # a DNS name or IPv4 address, or [IPv6]


@dataclass(frozen=True)
class Authority:
    """A host name (lower case; an IPv6 address in brackets) and its port, if one was written."""

    host: str
    port: int | None

    @classmethod
    def parse(cls, text: str) -> Authority | None:
        """``name``, ``name:port``, ``[v6]`` or ``[v6]:port``; None if it is none of these."""
        text = text.strip().lower()
        host, sep, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
        if not sep:
            host, port = text, ""
        if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            return None
        if not _HOST_NAME.fullmatch(host):
            return None
        return cls(host, int(port) if port else None)

    def same_as(self, other: Authority, default_port: int | None) -> bool:
        """Same host and port, a port left out counting as the scheme's default."""
        mine = self.port if self.port is not None else default_port
        theirs = other.port if other.port is not None else default_port
        return self.host == other.host and mine == theirs


def is_loopback(host: str) -> bool:
    """Whether a bind address (or a Host name) is on this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def loopback_hosts(bind_host: str) -> str:
    """What ``logllm serve`` allows when bound to loopback and ``allowed_hosts`` is empty: loopback names (and
    the bound address itself), any port."""
    bound = f"[{bind_host.strip('[]')}]" if ":" in bind_host else bind_host
    return ",".join(dict.fromkeys((*LOOPBACK_NAMES, bound.lower())))


class HostRules:
    """``allowed_hosts`` parsed: ``*`` (any), ``name``, ``.domain`` (it and its subdomains), each with an
    optional ``:port`` (else any port). Empty: any host."""

    def __init__(self, allowed_hosts: str) -> None:
        entries = [e.strip().lower() for e in allowed_hosts.split(",") if e.strip()]
        self.any_host = not entries or "*" in entries
        self.entries: list[Authority] = []
        for entry in entries:
            if entry == "*":
                continue
            parsed = Authority.parse(entry)
            if parsed is None:
                raise ValueError(f"allowed_hosts: {entry!r} is not a host name, '.domain' or '[v6]', with ':port'")
            self.entries.append(parsed)

    def listed(self, authority: Authority, default_port: int | None = None) -> bool:
        """Whether an entry (not ``*``) names this host (and its port, when the entry has one)."""
        port = authority.port if authority.port is not None else default_port
        for entry in self.entries:
            if entry.host.startswith("."):  # the domain and its subdomains
                named = authority.host == entry.host[1:] or authority.host.endswith(entry.host)
            else:
                named = authority.host == entry.host
            if named and (entry.port is None or entry.port == port):
                return True
        return False

    def allows(self, authority: Authority) -> bool:
        return self.any_host or self.listed(authority)


class RequestGuard:
    """ASGI middleware: the Host check, then the Origin check of state-changing requests."""

    def __init__(self, app: ASGIApp, allowed_hosts: str, public_url: str = "") -> None:
        self.app = app
        self.rules = HostRules(allowed_hosts)
        public = urlsplit(public_url) if public_url else None
        self.public = (public.scheme, Authority.parse(public.netloc)) if public and public.netloc else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope["method"], scope["path"], Headers(scope=scope))
            if refusal is not None:
                status, reason, message, field = refusal
                await error_response(status, reason, message, field=field)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, method: str, path: str, headers: Headers) -> tuple[int, str, str, str] | None:
        """(status, reason, message, field) of a request to refuse; None for one to serve."""
        host_header = headers.get("host")
        host = Authority.parse(host_header) if host_header is not None else None
        checked = not self.rules.any_host and host_header is not None and path not in EXEMPT_PATHS
        if checked and (host is None or not self.rules.listed(host)):
            return 400, "host_not_allowed", (
                f"Host {shorten(host_header)} is not a name this service answers to (--allowed-hosts /"
                " LOGLLM_ALLOWED_HOSTS; when bound to loopback: loopback names only, so a rebound DNS name fails)"
            ), "Host"  # fmt: skip
        origin = headers.get("origin")
        if method in STATE_CHANGING and origin is not None and not self.own_origin(origin, host):
            return 403, "cross_origin", (
                f"Origin {shorten(origin)} is not this service: a state-changing request from a web page is"
                " accepted only from the service's own origin, public_url's, or an --allowed-hosts name"
            ), "Origin"  # fmt: skip
        return None

    def own_origin(self, origin: str, host: Authority | None) -> bool:
        """The Origin's host and port are the Host header's, public_url's, or listed in allowed_hosts."""
        parts = urlsplit(origin.strip())
        if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
            return False  # "null" (sandboxed frames, file:), or no web origin at all
        source = Authority.parse(parts.netloc)
        if source is None:
            return False
        default = DEFAULT_PORTS[parts.scheme]
        if host is not None and source.same_as(host, default):
            return True
        if self.public is not None and self.public[1] is not None and source.same_as(self.public[1], default):
            return True
        return self.rules.listed(source, default)


def serve_settings(settings: ServiceSettings) -> tuple[ServiceSettings | None, int, str]:
    """What ``logllm serve`` listens with, and the log line (level, text) that says so; None: refuse to start.

    Without a token, a process that accepts writes (roles all and api) listens on loopback only, unless
    ``insecure_no_auth`` says it may listen further: refusing is clearer than a quiet fallback to loopback,
    which would look like a network problem from every other host. On loopback with ``allowed_hosts`` empty,
    loopback names only (DNS rebinding); elsewhere any host unless ``allowed_hosts`` says which.
    """
    writes = settings.role != "worker"  # a worker serves /health and /metrics only
    loopback = is_loopback(settings.host)
    if writes and settings.auth_token is None and not loopback and not settings.insecure_no_auth:
        return None, logging.ERROR, (
            f"refusing to listen on {settings.host} without a token: set LOGLLM_AUTH_TOKEN (--auth-token), or"
            " listen on loopback (--host 127.0.0.1), or set LOGLLM_INSECURE_NO_AUTH=true (--insecure-no-auth) to"
            f" let anyone who can reach {settings.host} post logs, teach patterns and close windows"
        )  # fmt: skip
    if loopback and not settings.allowed_hosts:
        settings = settings.model_copy(update={"allowed_hosts": loopback_hosts(settings.host)})
    hosts = f"Host must be one of {settings.allowed_hosts}" if settings.allowed_hosts else "any Host"
    if not writes or settings.auth_token is not None:
        return settings, logging.INFO, f"listening on {settings.host}; {hosts}"
    if loopback:
        return settings, logging.INFO, f"no auth token: listening on loopback ({settings.host}) only; {hosts}"
    return settings, logging.WARNING, (
        f"--insecure-no-auth: listening on {settings.host} WITHOUT a token: anyone who can reach it may post logs,"
        f" teach patterns and close windows; {hosts}"
    )  # fmt: skip
