"""A real three-primary Redis Cluster on loopback, built from the same redis-server binary as EmbeddedRedis.

Slots are split in three ranges with CLUSTER ADDSLOTS and the nodes are joined with CLUSTER MEET (what
``redis-cli --cluster create`` does, without needing redis-cli); ``start`` waits until every node reports
``cluster_state:ok`` and agrees on all three primaries.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from types import TracebackType

import redis

from service.windows.embedded_redis import EmbeddedRedis, free_port

SLOTS = 16384
NODES = 3
READY_TIMEOUT_S = 30.0
CLUSTER_CONFIG = ["cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 5000"]
BUS_OFFSET = 10_000  # a node also listens on port + 10000 for the cluster bus


def cluster_port() -> int:
    """A free port whose bus port (port + 10000) is a valid port too."""
    while True:
        port = free_port()
        if port + BUS_OFFSET <= 65_535:
            return port


class LocalCluster:
    """``with LocalCluster(tmp) as cluster: cluster.url`` (any node's url; clients discover the rest)."""

    def __init__(self, data_dir: Path) -> None:
        self.nodes = [
            EmbeddedRedis(data_dir / f"node{i}", port=cluster_port(), extra_config=CLUSTER_CONFIG) for i in range(NODES)
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        clients = [redis.Redis(host="127.0.0.1", port=node.port or 0) for node in self.nodes]
        try:
            bounds = [SLOTS * i // NODES for i in range(NODES + 1)]
            for client, low, high in zip(clients, bounds, bounds[1:], strict=False):
                client.execute_command("CLUSTER ADDSLOTS", *range(low, high))
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER MEET", "127.0.0.1", node.port)
            self._wait_ready(clients)
        finally:
            for client in clients:
                client.close()

    @staticmethod
    def _wait_ready(clients: list[redis.Redis]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            infos = [client.execute_command("CLUSTER INFO") for client in clients]
            if all(
                info.get("cluster_state") == "ok" and str(info.get("cluster_known_nodes")) == str(NODES)
                for info in infos
            ):
                return
            time.sleep(0.1)
        raise RuntimeError(f"cluster not ready after {READY_TIMEOUT_S} s: {infos}")

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
