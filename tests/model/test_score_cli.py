"""`logllm score --explain` offline explains a window as the service's record does: the novelty rule's templates
lead, and each top message carries the raw text and the content of its first line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import logllm_cli
from tests.conftest import DEFAULT_CHECKPOINT
from tests.service.test_patterns_hdfs import QUOTA, QUOTA_LINE, hdfs_session

pytestmark = pytest.mark.slow


def test_offline_explanations_lead_with_the_novel_line_and_carry_its_raw_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    block, normal = "blk_-1608999687919862906", "blk_7503483334202473044"
    log = tmp_path / "hdfs.log"
    log.write_text("\n".join([*hdfs_session(normal), *hdfs_session(block, QUOTA_LINE.format(block=block))]) + "\n")
    argv = ["score", str(log), "--checkpoint", str(DEFAULT_CHECKPOINT), "--log-format", "hdfs",
            "--window-mode", "session", "--device", "cpu", "--explain"]  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        logllm_cli.main(argv)
    assert exited.value.code == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split("\t")[-1] == "explanation"
    by_id = {row.split("\t")[0]: row.split("\t") for row in rows}

    flagged = by_id[f"session:default:{block}"]
    assert flagged[3:5] == ["anomalous", "novel_template"]
    assert float(flagged[2]) < 0.7743  # the model alone would have let it pass (the checkpoint's threshold)
    first = json.loads(flagged[6])[0]
    assert first["message"] == QUOTA and first["novelty"] == "novel"
    assert first["raw"] == QUOTA_LINE.format(block=block)
    assert first["line"] == f"Disk quota exceeded while writing {block} to /data"

    assert by_id[f"session:default:{normal}"][3] == "normal" and by_id[f"session:default:{normal}"][6] == "[]"
