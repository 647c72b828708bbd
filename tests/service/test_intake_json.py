"""JSON bodies of POST /logs: the fast path (orjson, no model) takes only what the request model would accept,
and gives the same lines; everything else goes to the model, so its errors (422 naming the field) stay."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from service.intake.batch import LineFields, LogsRequest, json_lines, plain_lines


def model_lines(body: bytes, default_source: str | None) -> list[LineFields]:
    """What the request model makes of a body: the reference the fast path is held to."""
    request = LogsRequest.model_validate_json(body)
    return [
        (i, ln.message, ln.session_id, ln.source or default_source, ln.timestamp) for i, ln in enumerate(request.lines)
    ]


def body(*lines: object, **top: object) -> bytes:
    return json.dumps({"lines": list(lines), **top}).encode()


PLAIN = [
    body({"message": "081109 203518 148 INFO dfs.DataNode: blk_1 served"}),
    body({"message": "a", "session_id": "s-1", "source": "web", "timestamp": "2024-01-01T00:00:00Z"}),
    body({"message": "a", "timestamp": 1700000000.5}, {"message": "b", "timestamp": 1700000000}),
    body({"message": "ünïcode ✓ 日本", "session_id": "x" * 256, "extra": {"ignored": [1, 2]}}, more="ignored"),
    body({"message": "a", "session_id": None, "source": None, "timestamp": None}),
    b'{"lines": [{"message": "first", "message": "last"}]}',  # a repeated key: the last one, as the model reads it
    b'{"lines": [{"message": "tab\\tnul\\u0000 quote\\" \\ud83d\\ude00"}]}',
]
NOT_PLAIN = [
    body({"message": "a", "session_id": "has space"}),  # refused by both
    body({"message": "a", "session_id": "ends\n"}),  # Python's $ would match before the \n; the model refuses
    body({"message": "a", "session_id": "a\x1cb"}),  # \x1c is white space to Python, not to the model: accepted
    body({"message": "a", "session_id": "x" * 257}),
    body({"message": "a", "session_id": ""}),
    body({"message": "a", "source": "has:colon"}),
    body({"message": "a", "timestamp": True}),
    body({"message": "a", "timestamp": [1]}),
    body({"message": 5}),
    body({"message": None}),
    body({"session_id": "s"}),
    body("just a string"),
    body(),
    b'{"lines": {"message": "a"}}',
    b"[1, 2]",
    b"not json",
    b'{"lines": [{"message": "lone \\ud800 surrogate"}]}',
]


@pytest.mark.parametrize("default_source", [None, "dflt"])
@pytest.mark.parametrize("raw", PLAIN + NOT_PLAIN)
def test_json_lines_are_what_the_request_model_makes_of_the_body(raw: bytes, default_source: str | None) -> None:
    try:
        expected: list[LineFields] | ValidationError = model_lines(raw, default_source)
    except ValidationError as exc:
        expected = exc
    if isinstance(expected, ValidationError):
        with pytest.raises(ValidationError) as raised:
            json_lines(raw, default_source)
        assert raised.value.errors() == expected.errors()
    else:
        assert json_lines(raw, default_source) == expected


def test_the_fast_path_takes_plain_bodies_and_leaves_the_rest_to_the_model() -> None:
    assert all(plain_lines(raw, None) is not None for raw in PLAIN)
    assert all(plain_lines(raw, None) is None for raw in NOT_PLAIN)
