"""The novelty rule on the shipped checkpoint and its training vocabulary, as an operator meets it: normal HDFS
block sessions stream in as raw log lines and come back normal; a session with one line of a kind training never
saw is anomalous with reason novel_template and that line first in its explanation, although the model alone
scores it below the threshold; once the template is learned (POST /patterns/{id}/learn, or a mute of the
flagged window), the next such session comes back normal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.patterns.pattern_store import template_id
from service.settings import ServiceSettings
from tests.conftest import DEFAULT_CHECKPOINT
from tests.service.test_app import TEXT, scored, wait_for

pytestmark = pytest.mark.slow
QUOTA = "Disk quota exceeded while writing <*> to <*>"  # in no HDFS training session
SLOW = "Checksum verified slowly for <*> on <*>"  # nor this


# a complete normal HDFS write of one block to three replicas, as HDFS_v1's normal sessions write: (component,
# message); with two, the counts of a normal session (three Receiving, three Received...) would be unusual
WRITE = [
    ("DataNode$DataXceiver", "Receiving block {block} src: /10.250.19.102:54106 dest: /10.250.19.102:50010"),
    ("FSNamesystem", "BLOCK* NameSystem.allocateBlock: /mnt/hadoop/mapred/system/job_0001/job.jar. {block}"),
    ("DataNode$DataXceiver", "Receiving block {block} src: /10.250.10.6:40524 dest: /10.250.10.6:50010"),
    ("DataNode$PacketResponder", "PacketResponder 1 for block {block} terminating"),
    ("DataNode$PacketResponder", "Received block {block} of size 67108864 from /10.250.10.6"),
    ("FSNamesystem",
     "BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.250.10.6:50010 is added to {block} size 9"),
    ("DataNode$PacketResponder", "PacketResponder 0 for block {block} terminating"),
    ("DataNode$PacketResponder", "Received block {block} of size 67108864 from /10.250.19.102"),
    ("FSNamesystem",
     "BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.250.19.102:50010 is added to {block} size 9"),
    ("DataNode$DataXceiver", "Receiving block {block} src: /10.251.43.21:45933 dest: /10.251.43.21:50010"),
    ("DataNode$PacketResponder", "PacketResponder 2 for block {block} terminating"),
    ("DataNode$PacketResponder", "Received block {block} of size 67108864 from /10.251.43.21"),
    ("FSNamesystem",
     "BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.251.43.21:50010 is added to {block} size 9"),
]


def hdfs_session(block: str, *extra: str) -> list[str]:
    """The block's normal write in HDFS.log's raw format, then the ``extra`` lines."""
    lines = [f"081109 203519 145 INFO dfs.{component}: {message}" for component, message in WRITE]
    return [line.format(block=block) for line in [*lines, *extra]]


QUOTA_LINE = "081109 203520 148 WARN dfs.DataNode$DataXceiver: Disk quota exceeded while writing {block} to /data"
SLOW_LINE = "081109 203520 148 INFO dfs.DataNode: Checksum verified slowly for {block} on /data"


@pytest.fixture
def client(redis_url: str) -> Iterator[TestClient]:
    settings = ServiceSettings(
        redis_url=redis_url, checkpoint=DEFAULT_CHECKPOINT, device="cpu", log_format="hdfs", window_mode="session",
        novelty="flag", novelty_warmup_s=0,
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        wait_for(lambda: client.get("/health/ready").status_code == 200, timeout=600, what="model ready")
        yield client


def stream(client: TestClient, block: str, *extra: str) -> dict[str, Any]:
    """One block's lines as a text body, the session closed; its verdict."""
    body = "\n".join(hdfs_session(block, *extra)) + "\n"
    accepted = client.post("/logs", content=body, headers={"Content-Type": TEXT}).json()
    assert accepted["rejected"] == [], accepted
    closed = client.post(f"/sequences/{block}/close")
    assert closed.status_code == 200, closed.text
    return {"id": closed.json()["id"], **scored(client, closed.json()["id"], timeout=300)}


def test_an_unseen_hdfs_line_is_flagged_first_and_normal_once_learned_or_muted(client: TestClient) -> None:
    for i in range(3):
        normal = stream(client, f"blk_100{i}")
        assert (normal["status"], normal["reason"], normal["novelty"]) == ("normal", None, None), normal

    flagged = stream(client, "blk_2001", QUOTA_LINE)
    assert (flagged["status"], flagged["reason"]) == ("anomalous", "novel_template"), flagged
    assert flagged["score"] < flagged["threshold"]  # the model alone would have missed it
    assert flagged["novelty"] == {"novel": [QUOTA], "known_anomalous": [], "transitions": [], "counts": [],
                                   "missing": []}  # fmt: skip
    lead = wait_for(
        lambda: (r := client.get(f"/sequences/{flagged['id']}").json())["explanation_status"] == "done" and r,
        what="the explanation",
    )["explanation"][0]
    assert (lead["message"], lead["novelty"]) == (QUOTA, "novel") and "Disk quota exceeded" in lead["line"]
    quota = client.get(f"/patterns/{template_id(QUOTA)}", params={"source": "default"}).json()["sources"][0]
    assert quota["new"] and "Disk quota exceeded while writing blk_2001 to /data" in quota["example"]  # raw_line(i)
    assert client.post(f"/patterns/{template_id(QUOTA)}/learn").status_code == 200

    again = stream(client, "blk_2002", QUOTA_LINE)
    assert (again["status"], again["reason"]) == ("normal", None), again

    slow = stream(client, "blk_3001", SLOW_LINE)
    assert (slow["status"], slow["reason"]) == ("anomalous", "novel_template"), slow
    muted = client.post(f"/sequences/{slow['id']}/feedback", json={"label": "normal", "mute": True})
    assert muted.status_code == 200 and muted.json()["learned"] == [template_id(SLOW)]
    after_mute = stream(client, "blk_3002", SLOW_LINE)
    assert (after_mute["status"], after_mute["reason"]) == ("normal", None), after_mute
    new = client.get("/patterns", params={"new_only": True}).json()["items"]
    assert new == []  # every template is in the checkpoint's normal vocabulary or learned now

