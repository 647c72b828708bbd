"""Syslog intake: TCP lines/s beside POST /logs text for the same lines, and each syslog shipper's time for
2,000 lines.

One ``logllm serve --role api`` subprocess (embedded Redis in a temporary directory, AOF every second) with a
syslog TCP and UDP listener. Lines are HDFS_2k's, repeated; windows stay open (no size or idle close), so this
measures intake alone.

- ``--mode throughput``: rounds alternate the two paths on the same server. HTTP: text/plain bodies of
  ``--body-lines`` lines, ``--concurrency`` requests in flight (httpx). Syslog: one TCP connection writing
  RFC 5424 octet-counted frames (what ``logger --octet-count`` and rsyslog's omfwd send); its time runs until
  the service's ``logllm_lines_ingested_total{format="syslog_tcp"}`` counts every line. Both are run with 1 and
  with ``--concurrency`` in flight (requests; connections, as that many shippers). Ratio = syslog / HTTP. Each
  frame's header time is stored with its line (a cost the HTTP text lines, which have none, do not pay). Beside
  lines/s: the CPU µs per line of the service, its Redis and this process, and the load after each round (on a
  shared machine lines/s follow the scheduler; CPU per line much less so).
- ``--before REV`` (throughput, parse): the service of that git revision runs too (``bench.common.checkout``), each
  round going through both, so a change is measured before and after side by side.
- ``--mode parse``: thread CPU µs per line of the intake's per-line work in-process (``parse_cost``), syslog vs
  HTTP text, with ``--before`` in that revision too.
- ``--mode shippers``: logger (TCP octet counting, UDP), rsyslog (omfwd TCP, UDP; omelasticsearch bulk) and
  syslog-ng (network(), syslog()) each ship 2,000 lines; the time from the shipper's start until the service
  counted them all.

    python -m bench.syslog_intake --mode throughput --rounds 3 --lines 20000
    python -m bench.syslog_intake --mode shippers
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    base_parser,
    checkout,
    cpu_seconds,
    machine,
    machine_line,
    result_name,
    table,
    write_result,
)

READY_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, url: str, tcp: int, udp: int, pid: int = 0) -> None:
        self.url, self.tcp, self.udp = url, tcp, udp
        self.pids = {"server": pid, "redis": embedded_redis_pid(pid)} if pid else {}
        self.polls = 0  # of /metrics while waiting for lines
        # one kept-alive client for the polls: httpx.get makes a client (and an SSL context) per call, tens of ms
        # of CPU each on this 2-core machine, taken from the server while the syslog round is timed
        self.client = httpx.Client(base_url=url, timeout=30)

    def ingested(self, fmt: str) -> float:
        for line in self.client.get("/metrics").text.splitlines():
            if line.startswith(f'logllm_lines_ingested_total{{format="{fmt}"}} '):
                return float(line.split()[-1])
        return 0.0

    def wait_ingested(
        self, fmt: str, count: float, timeout: float = 300, since: tuple[float, float] | None = None
    ) -> None:
        """Until the service counted ``count`` lines of ``fmt``.

        Each poll of /metrics costs the service about 1.6 ms of CPU (two Redis round trips and the exposition), so
        a timed round polls as little as it can: with ``since`` (perf_counter and count when its lines began to go
        out), each wait is 80% of the time the missing lines take at the rate so far, at least 5 ms and at most
        100 ms. A fixed 50 ms step cost a 200 ms round 25 ms on average, which an HTTP round, timed to its last
        answer, does not pay, and polls every few ms would cost the service more than that."""
        deadline = time.monotonic() + timeout
        while (got := self.ingested(fmt)) < count:
            self.polls += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"{fmt}: {got} of {count} lines after {timeout} s")
            wait = 0.05
            if since is not None and got > since[1]:
                rate = (got - since[1]) / (time.perf_counter() - since[0])
                wait = min(0.1, max(0.005, 0.8 * (count - got) / rate))
            time.sleep(wait)


def embedded_redis_pid(pid: int) -> int:
    """The redis-server child of the ``logllm serve`` process ``pid`` (0 when none)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if "redis" in Path(f"/proc/{child}/comm").read_text():
                return int(child)
    return 0


@contextmanager
def serve(workdir: Path, repo: Path | None = None) -> Iterator[Server]:
    """``logllm serve`` of this checkout, or of ``repo`` (bench.common.checkout: the code of another revision)."""
    port, tcp, udp = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "LOGLLM_ROLE": "api", "LOGLLM_PORT": str(port), "LOGLLM_REDIS_DATA_DIR": "",
        "LOGLLM_SYSLOG_TCP": f"127.0.0.1:{tcp}", "LOGLLM_SYSLOG_UDP": f"127.0.0.1:{udp}",
        "LOGLLM_SOURCES": '{"hdfs": {"log_format": "hdfs"}}', "LOGLLM_IDLE_TIMEOUT_S": "3600",
        "LOGLLM_MAX_SESSION_LINES": "1000000", "LOGLLM_MAX_OPEN_WINDOWS": "10000000", "LOGLLM_REDIS_MAXMEMORY": "4gb",
    }  # fmt: skip
    log_path = workdir / f"serve-{port}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve"], env=env, stdout=log, stderr=log, cwd=repo
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{url}/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"logllm serve did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        server = Server(url, tcp, udp, process.pid)
        with server.client:
            yield server
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def frames(lines: list[str]) -> bytes:
    out = []
    for i, line in enumerate(lines):
        data = f"<13>1 2026-12-05T20:00:00.000000+00:00 bench hdfs {i % 65536} - - {line}".encode()
        out.append(f"{len(data)} ".encode() + data)
    return b"".join(out)


def syslog_round(server: Server, payloads: list[bytes], count: int) -> float:
    """One connection per payload (as many shippers), written at once; timed until every line is counted."""
    before = server.ingested("syslog_tcp")
    started = time.perf_counter()

    def send(payload: bytes) -> None:
        with socket.create_connection(("127.0.0.1", server.tcp)) as sock:
            sock.sendall(payload)

    with ThreadPoolExecutor(len(payloads)) as pool:
        list(pool.map(send, payloads))
    server.wait_ingested("syslog_tcp", before + count, since=(started, before))
    return count / (time.perf_counter() - started)


def http_round(server: Server, bodies: list[bytes], count: int, concurrency: int) -> float:
    headers = {"content-type": "text/plain"}
    with httpx.Client(base_url=server.url, timeout=120) as client:

        def post(numbered: tuple[int, bytes]) -> None:
            # The lines repeat HDFS_2k, so bodies repeat byte for byte; a shipper's never do (timestamps). The
            # body's number in the query keeps identical bodies in flight from being one request to the intake's
            # retry guard (429 request_in_flight), which keys on query and body.
            number, body = numbered
            answer = client.post(f"/logs?source=hdfs&body={number}", content=body, headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(f"POST /logs answered {answer.status_code}: {answer.text[:300]}")

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(post, enumerate(bodies)))
        return count / (time.perf_counter() - started)


def throughput(sides: dict[str, Server], lines: list[str], args: Any) -> dict[str, Any]:
    """Rounds alternate HTTP text with 1 and ``--concurrency`` requests in flight, and syslog TCP with 1 and
    ``--concurrency`` connections, so each pair sees the same machine load; with ``--before``, each round does so
    on the service of that revision and then on this checkout's."""
    share = -(-len(lines) // args.concurrency)
    split = [frames(lines[i : i + share]) for i in range(0, len(lines), share)]
    payloads = {1: [frames(lines)], args.concurrency: split}
    bodies = [
        "".join(f"{line}\n" for line in lines[i : i + args.body_lines]).encode()
        for i in range(0, len(lines), args.body_lines)
    ]
    for server in sides.values():
        http_round(server, bodies[:2], 2 * args.body_lines, 1)  # warm-up: imports, scripts loaded
        syslog_round(server, [frames(lines[:1000])], 1000)

    def key(side: str, kind: str, c: int) -> str:  # "<side> <path>" when two services run
        return f"{side} {kind} x{c}" if len(sides) > 1 else f"{kind} x{c}"

    rows: dict[str, list[float]] = {}
    cpu: dict[str, dict[str, float]] = {}  # path -> process -> CPU seconds over all its rounds
    loads: list[float] = []
    polls: dict[str, int] = {}  # /metrics reads while timed (syslog rounds), counted in the service's CPU
    for n in range(args.rounds):
        for side, server in sides.items():
            for c in sorted(payloads):
                for kind in ("http_text", "syslog_tcp"):
                    path = key(side, kind, c)
                    before, polled = cpu_now(server), server.polls
                    if kind == "http_text":
                        rate = http_round(server, bodies, len(lines), c)
                    else:
                        rate = syslog_round(server, payloads[c], len(lines))
                    rows.setdefault(path, []).append(rate)
                    polls[path] = polls.get(path, 0) + server.polls - polled
                    spent = cpu.setdefault(path, {})
                    for name, seconds in cpu_now(server).items():
                        spent[name] = spent.get(name, 0.0) + seconds - before[name]
        loads.append(round(os.getloadavg()[0], 2))
        rates = ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rows.items())
        print(f"round {n + 1}: {rates} lines/s, load {loads[-1]}")
    medians = {k: statistics.median(v) for k, v in rows.items()}
    ratios = {
        key(side, "", c).replace("  ", " ").strip(): round(
            medians[key(side, "syslog_tcp", c)] / medians[key(side, "http_text", c)], 3
        )
        for side in sides
        for c in sorted(payloads)
    }
    count = len(lines) * args.rounds
    per_line = {k: {name: round(1e6 * s / count, 2) for name, s in v.items()} for k, v in cpu.items()}
    names = list(next(iter(per_line.values())))
    print(table(["path (x in flight)", "lines/s (median)", "rounds", *(f"{n} CPU us/line" for n in names)],
                [[k, f"{v:,.0f}", len(rows[k]), *per_line[k].values()] for k, v in medians.items()]))  # fmt: skip
    print("syslog TCP / HTTP text: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) + " (goal >= 0.8x)")
    print(f"load average (1 min) after each round: {loads}; /metrics polls per syslog round: "
          + ", ".join(f"{k} {v / args.rounds:.1f}" for k, v in polls.items() if v))  # fmt: skip
    return {
        "lines_per_round": len(lines), "before": args.before or None, "rounds": rows, "median_lines_per_s": medians,
        "ratio": ratios, "cpu_us_per_line": per_line,
        "metrics_polls_per_round": {k: v / args.rounds for k, v in polls.items()}, "load_average_1m_per_round": loads,
    }  # fmt: skip


def cpu_now(server: Server) -> dict[str, float]:
    """CPU seconds so far of the service, its Redis, and this process (the clients and the /metrics polls):
    on a shared machine, the CPU each path costs per line says more than its lines/s."""
    return {**{name: cpu_seconds(pid) for name, pid in server.pids.items()}, "bench": time.process_time()}


def parse_cost(hdfs_file: str, count: int, repeats: int) -> dict[str, float]:
    """Thread CPU µs per line of the intake's per-line work in this process, no I/O: syslog (frames cut, headers
    parsed, ``build_batch``, the store call prepared) and HTTP text (the body decoded and split, ``build_batch``,
    prepared), the same lines in batches of 1,000, the least of ``repeats``. It uses only what the code before
    this change has too, so ``--before`` runs this very function in that checkout (``python -c``)."""
    import time
    import types
    from pathlib import Path

    import redis.asyncio

    from service.intake.batch import build_batch, text_lines
    from service.intake.syslog_listener import SyslogIntake
    from service.intake.syslog_parse import FrameReader
    from service.settings import ServiceSettings
    from service.windows.store import WindowStore

    hdfs = Path(hdfs_file).read_text(encoding="utf-8").splitlines()
    lines = (hdfs * (count // len(hdfs) + 1))[:count]
    chunks = [lines[i : i + 1000] for i in range(0, len(lines), 1000)]
    settings = ServiceSettings(sources={"hdfs": {"log_format": "hdfs"}})
    intake = SyslogIntake(types.SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    store = WindowStore(redis.asyncio.Redis(), settings)  # prepare() is pure CPU
    payloads = [frames(chunk) for chunk in chunks]
    bodies = ["".join(f"{line}\n" for line in chunk).encode() for chunk in chunks]

    def syslog_tcp() -> None:
        for payload in payloads:
            messages = FrameReader(settings.syslog_max_message_bytes).feed(payload).messages
            store.prepare(build_batch(intake.line_fields(messages)[0], settings).groups)

    def http_text() -> None:
        for body in bodies:
            text = text_lines(body, None)[0]
            store.prepare(build_batch([(i, line, None, "hdfs", None) for i, line in text], settings).groups)

    cost = {}
    for path in (syslog_tcp, http_text):
        best = float("inf")
        for _ in range(repeats):
            started = time.thread_time()
            path()
            best = min(best, time.thread_time() - started)
        cost[path.__name__] = round(1e6 * best / len(lines), 3)
    return cost


def parse_costs(args: Any) -> dict[str, Any]:
    """``parse_cost`` here, and with ``--before`` in that revision's checkout too (a subprocess there)."""
    hdfs_file = str(args.data / "HDFS" / "HDFS_2k.log")
    sides: dict[str, dict[str, float]] = {}
    if args.before:
        call = f"import json; print(json.dumps(parse_cost({hdfs_file!r}, {args.lines}, {args.repeats})))"
        code = "\n".join([inspect.getsource(frames), inspect.getsource(parse_cost), call])
        done = subprocess.run([sys.executable, "-c", code], cwd=checkout(args.before), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"parse_cost at {args.before}: {done.stderr[-2000:]}")
        sides["before"] = json.loads(done.stdout.strip().splitlines()[-1])
    sides["after" if sides else "this"] = parse_cost(hdfs_file, args.lines, args.repeats)
    print(table(["code", "syslog_tcp µs/line", "http_text µs/line", "syslog / http CPU"],
                [[side, c["syslog_tcp"], c["http_text"], round(c["syslog_tcp"] / c["http_text"], 2)]
                 for side, c in sides.items()]))  # fmt: skip
    return {"lines": args.lines, "repeats": args.repeats, "before": args.before or None,
            "thread_cpu_us_per_line": sides}  # fmt: skip


def shippers(server: Server, lines: list[str], workdir: Path) -> dict[str, Any]:
    from tests.service.syslog_shippers import logger_binary, rsyslog, syslog_ng
    from tests.service.test_intake_bulk import omelasticsearch_config
    from tests.service.test_intake_syslog_shippers import TCP_OCTETS, rsyslog_config, syslog_ng_config

    file = workdir / "hdfs.log"
    file.write_text("".join(f"{line}\n" for line in lines))
    port = int(server.url.rsplit(":", 1)[1])
    logger = [logger_binary(), "--rfc5424", "--size", "65536", "-t", "hdfs", "-n", "127.0.0.1", "-f", str(file)]

    def run(argv: list[str]) -> Callable[[Path], Any]:
        @contextmanager
        def ship(_: Path) -> Iterator[None]:
            subprocess.run(argv, check=True, timeout=300)
            yield

        return ship

    cases: list[tuple[str, str, Callable[[Path], Any]]] = [
        ("logger rfc5424 tcp octet-counting", "syslog_tcp",
         run([*logger, "-P", str(server.tcp), "-T", "--octet-count"])),
        ("logger rfc5424 udp", "syslog_udp", run([*logger, "-P", str(server.udp), "-d"])),
        ("rsyslog omfwd tcp (octet-counted rfc5424)", "syslog_tcp",
         lambda tmp: rsyslog(tmp, rsyslog_config(file, server.tcp, TCP_OCTETS))),
        ("rsyslog omfwd udp (rfc3164)", "syslog_udp",
         lambda tmp: rsyslog(tmp, rsyslog_config(file, server.udp, 'protocol="udp"', tag="hdfs:"))),
        ("rsyslog omelasticsearch bulk", "es_bulk", lambda tmp: rsyslog(tmp, omelasticsearch_config(file, port))),
        ("syslog-ng network() tcp (rfc3164)", "syslog_tcp",
         lambda tmp: syslog_ng(tmp, syslog_ng_config(file, server.tcp, "network"))),
        ("syslog-ng syslog() tcp (rfc5424)", "syslog_tcp",
         lambda tmp: syslog_ng(tmp, syslog_ng_config(file, server.tcp, "syslog"))),
    ]  # fmt: skip
    results: dict[str, Any] = {}
    for n, (name, fmt, start) in enumerate(cases):
        before = server.ingested(fmt)
        tmp = workdir / f"case{n}"
        tmp.mkdir()
        started = time.perf_counter()
        with start(tmp):
            server.wait_ingested(fmt, before + len(lines), timeout=120)
            seconds = time.perf_counter() - started
        results[name] = {"seconds": round(seconds, 3), "lines": len(lines), "format": fmt}
        print(f"{name}: {seconds:.2f} s for {len(lines)} lines")
    return {"shippers": results}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], "syslog_intake")
    parser.add_argument("--mode", choices=["throughput", "shippers", "parse"], default="throughput")
    parser.add_argument("--lines", type=int, default=20_000, help="lines per throughput round (HDFS_2k repeated)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7, help="parse: repeats, the least CPU time counts")
    parser.add_argument("--body-lines", type=int, default=1000, help="lines per HTTP body")
    parser.add_argument("--concurrency", type=int, default=4, help="HTTP requests in flight")
    parser.add_argument(
        "--before", default="", help="throughput: also run the code of this git revision, rounds alternating (a/b)"
    )
    args = parser.parse_args()
    if args.quick:
        args.lines, args.rounds = 2000, 1
    hdfs = (args.data / "HDFS" / "HDFS_2k.log").read_text(encoding="utf-8").splitlines()
    info = machine()
    print(machine_line(info))
    if args.mode == "parse":
        write_result(result_name(args) + "-parse" if not args.name else args.name, parse_costs(args), info)
        return
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        sides: dict[str, Server] = {}
        if args.before and args.mode == "throughput":
            sides["before"] = stack.enter_context(serve(Path(folder), checkout(args.before)))
        sides["after" if sides else "this"] = stack.enter_context(serve(Path(folder)))
        if args.mode == "throughput":
            lines = (hdfs * (args.lines // len(hdfs) + 1))[: args.lines]
            payload = throughput(sides, lines, args)
        else:
            payload = shippers(sides["this"], hdfs, Path(folder))
    name = result_name(args)
    write_result(f"{name}-{args.mode}" if not args.name else name, payload, info)


if __name__ == "__main__":
    main()
