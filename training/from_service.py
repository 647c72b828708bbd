"""``logllm train --from-service URL --source S``: a source's own model from what a running service kept of it.

The data are the service's windows as it cut them (``GET /sources/{S}/training-sample``): the normal windows its
``--keep-normal-sample`` reservoir kept and the windows operators labeled. Each line comes with its raw text and
its content, the part the service's log format cut out (or the JSON message field, without protocol metadata): the
model is trained on the content, preprocessed here, because that is what the service will hand it; re-windowing the
raw lines instead would not give the same windows (sliding steps, idle closes, session ids sent as a field). How
the source is read (log format, windowing) comes from ``GET /sources`` and goes into the manifest's ``reading``.
Labeled anomalies follow ``--unlabeled``: never trained on, they join the test split and measure the new model.

``--register`` then posts the checkpoint to ``POST /models`` for the source. The service loads it from its own file
system, so ``--output`` must be a path the service's workers read (the same machine, or a volume mounted at the
same path); the command waits until every worker reports the model loaded, or names the worker that failed.
This module is an HTTP client only: training never imports the service.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from model.preprocess import preprocess
from model.reading import READING_FIELDS
from training.data_common import Interner, LabeledSequence, LoadReport
from training.data_splits import drop_seen, split_sequences, split_validation
from training.datasets import Splits
from training.settings import TrainSettings

MIN_NORMAL_WINDOWS = 10  # fewer cannot fill train, validation and test
SAMPLE_FILE = "training-sample.jsonl"


class FromServiceError(RuntimeError):
    """What went wrong talking to the service, in words that name the service, the source and the fix."""


@dataclass
class ServiceData:
    """The source's reading (READING_FIELDS -> value) and its windows as the service sent them."""

    reading: dict[str, Any]
    windows: list[dict[str, Any]]
    headers: dict[str, str] = field(default_factory=dict)

    def count(self, origin: str, label: str) -> int:
        return sum(1 for w in self.windows if w["from"] == origin and w["label"] == label)

    def summary(self) -> dict[str, int]:
        """What the manifest records of the data: windows by origin and label."""
        return {"sample_windows": self.count("sample", "normal"), "labeled_normal": self.count("feedback", "normal"),
                "labeled_anomalous": self.count("feedback", "anomalous")}  # fmt: skip


def _base(settings: TrainSettings) -> str:
    return str(settings.from_service).rstrip("/")


def _client(settings: TrainSettings) -> httpx.Client:
    token = settings.token.get_secret_value() if settings.token is not None else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=_base(settings), headers=headers, timeout=60.0)


def _get(client: httpx.Client, path: str) -> httpx.Response:
    try:
        response = client.get(path)
    except httpx.HTTPError as exc:
        raise FromServiceError(
            f"the service at {client.base_url} is unreachable: {type(exc).__name__}: {exc}"
        ) from None
    _check(response, client)
    return response


def _check(response: httpx.Response, client: httpx.Client) -> None:
    if response.status_code == 401:
        raise FromServiceError(
            f"the service at {client.base_url} wants its token: give --token (or LOGLLM_TOKEN); it said:"
            f" {_message(response)}"
        )
    if response.status_code >= 400 and response.status_code != 404:
        raise FromServiceError(
            f"{response.request.method} {response.request.url.path} answered HTTP {response.status_code}:"
            f" {_message(response)}"
        )


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message") or response.text[:300])
    except (ValueError, AttributeError):
        return response.text[:300]


def fetch(settings: TrainSettings, keep_in: Path | None = None) -> ServiceData:
    """The source's reading and windows; ``keep_in``: also write the sample there as it came (a record of what
    the checkpoint was trained on)."""
    source = str(settings.source)
    with _client(settings) as client:
        sources = {item["source"]: item for item in _get(client, "/sources").json()["items"]}
        if source not in sources:
            names = ", ".join(sorted(sources)[:10]) or "none yet"
            raise FromServiceError(
                f"the service at {client.base_url} has never seen source {source!r} (sources: {names})"
            )
        reading = {name: sources[source]["reading"][name]["value"] for name in READING_FIELDS}
        if reading["log_format"] is None:
            raise FromServiceError(f"source {source!r} has no log format decided yet (auto): send it some lines first")
        response = _get(client, f"/sources/{quote(source, safe='')}/training-sample")
        if response.status_code == 404:
            raise FromServiceError(
                f"the service at {client.base_url} has never seen source {source!r}: {_message(response)}"
            )
    windows = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    if keep_in is not None:
        keep_in.mkdir(parents=True, exist_ok=True)
        (keep_in / SAMPLE_FILE).write_text(response.text, encoding="utf-8")
    data = ServiceData(reading, windows, {k.lower(): v for k, v in response.headers.items()})
    normals = sum(1 for w in windows if w["label"] == "normal")
    if normals < MIN_NORMAL_WINDOWS:
        kept = data.headers.get("x-logllm-keep-normal-sample", "?")
        raise FromServiceError(
            f"the service at {_base(settings)} holds {normals} normal windows of source {source!r} to train on"
            f" ({data.count('sample', 'normal')} kept, {data.count('feedback', 'normal')} labeled normal; need at"
            f" least {MIN_NORMAL_WINDOWS}): start it with --keep-normal-sample N (it answers {kept}) and send more"
            " lines of the source"
        )
    return data


def service_splits(data: ServiceData, settings: TrainSettings) -> Splits:
    """Train, validation and test as ``--dataset text`` splits a file read the same way: sessions at random, fixed
    windows in time order (the last fifth is the test)."""
    report = LoadReport()
    intern = Interner()
    sequences: list[LabeledSequence] = []
    for window in sorted(data.windows, key=lambda w: (w.get("closed_at") or 0.0, w["window_id"])):
        lines = window["lines"]
        report.lines_read += len(lines)
        report.truncated_sequences += len(lines) > settings.max_messages
        messages = [intern(preprocess(x["content"])) for x in lines[: settings.max_messages]]
        sequences.append(LabeledSequence(window["window_id"], messages, int(window["label"] == "anomalous")))
    if data.reading["window_mode"] == "session":
        report.sessions = True
        train, test = split_sequences(sequences, 0.2, settings.seed, settings.split)
    else:
        cut = len(sequences) - max(1, len(sequences) // 5)
        train, test = sequences[:cut], sequences[cut:]
        if settings.split == "distinct":
            test, report.dropped_seen = drop_seen(train, test)
    train, validation = split_validation(train, settings.validation_fraction, settings.seed, settings.split)
    return Splits(list(train), list(validation), list(test), report)


def read_as_service(settings: TrainSettings, data: ServiceData) -> TrainSettings:
    """The settings with the source's reading, so the manifest records how the service reads it."""
    given = {name: data.reading[name] for name in READING_FIELDS if data.reading.get(name) is not None}
    return settings.model_copy(update=given)


def register(settings: TrainSettings, checkpoint: Path, version: str) -> dict[str, Any]:
    """POST /models for the source, then wait for every worker to report it (or its load error)."""
    source = str(settings.source)
    body = {"source": source, "checkpoint": str(checkpoint.resolve())}
    with _client(settings) as client:
        try:
            response = client.post("/models", json=body)
        except httpx.HTTPError as exc:
            raise FromServiceError(
                f"the service at {client.base_url} is unreachable: {type(exc).__name__}: {exc}"
            ) from None
        if response.status_code == 409 or response.status_code == 422:
            raise FromServiceError(f"POST /models refused the model of {source!r}: {_message(response)}")
        _check(response, client)
        generation = int(response.json()["generation"])
        deadline = time.monotonic() + settings.register_wait_s
        while True:
            workers = _get(client, "/models").json()["workers"]
            applied = {name: r for name, r in workers.items() if int(r.get("generation", -1)) >= generation}
            failed = {name: r["errors"][source] for name, r in applied.items() if source in r.get("errors", {})}
            if failed:
                name, error = next(iter(failed.items()))
                raise FromServiceError(f"worker {name} failed to load the model of {source!r}: {error}")
            if workers and len(applied) == len(workers):
                break
            if time.monotonic() >= deadline:
                waiting = sorted(set(workers) - set(applied)) or ["(no worker reported)"]
                raise FromServiceError(
                    f"registered the model of {source!r} (generation {generation}), but after"
                    f" {settings.register_wait_s:.0f} s these workers had not loaded it yet: {', '.join(waiting)}"
                )
            time.sleep(0.2)
    served = {name: r["models"].get(source, {}).get("version") for name, r in applied.items()}
    return {"source": source, "checkpoint": body["checkpoint"], "version": version, "generation": generation,
            "workers": served}  # fmt: skip
