"""Hostile bodies at the ingestion API: whatever arrives, the answer is a 400 with a reason (or a
200 for what is well formed), never a 500, and nothing bad reaches the store."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from engine.store import models
from tests.ingest.api_helpers import client, events, new_key, rows, seeded

GOOD = {"userId": "u1", "event": "Signed In", "messageId": "m-1"}


@pytest.fixture
def http(db: Engine) -> Iterator[TestClient]:
    seeded(db)
    yield from client(db, new_key(db))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE: list[tuple[str, bytes, dict[str, str], str]] = [
    ("invalid JSON", b'{"userId": "u1", ', {}, "not valid JSON"),
    ("not UTF-8", b'{"userId": "\xff\xfe"}', {}, "not valid JSON"),
    ("array body", b"[1, 2]", {}, "must be a JSON object"),
    ("string body", b'"track"', {}, "must be a JSON object"),
    ("null body", b"null", {}, "must be a JSON object"),
    ("empty body", b"", {}, "empty"),
    ("deep nesting", ('{"userId":"u1","event":"e","properties":{"a":' + nested(10_000) + "}}").encode(), {}, "deep"),
    ("moderate nesting", ('{"userId":"u1","event":"e","properties":{"a":' + nested(40) + "}}").encode(), {}, "deep"),
    ("huge integer", b'{"userId":"u1","event":"e","properties":{"n":' + b"9" * 5000 + b"}}", {}, "number"),
    ("infinite float", b'{"userId":"u1","event":"e","properties":{"n":1e999}}', {}, "number"),
    ("NaN", b'{"userId":"u1","event":"e","properties":{"n":NaN}}', {}, "number"),
    ("NUL in a value", b'{"userId":"u1","event":"e","properties":{"s":"a\\u0000b"}}', {}, "NUL"),
    ("NUL in a key", b'{"userId":"u1","event":"e","properties":{"a\\u0000":1}}', {}, "NUL"),
    ("NUL in the event", b'{"userId":"u1","event":"e\\u0000"}', {}, "NUL"),
    ("lone surrogate", b'{"userId":"u1","event":"e","properties":{"s":"\\ud800"}}', {}, "surrogate"),
    ("wrong content type", json.dumps(GOOD).encode(), {"Content-Type": "text/html"}, "Content-Type"),
    ("gzip that is not", b"\x1f\x8b\x08garbage", {"Content-Encoding": "gzip"}, "gzip"),
    ("gzip bomb", gzip.compress(b" " * 5_000_000), {"Content-Encoding": "gzip"}, "32 KB"),
    ("unknown encoding", json.dumps(GOOD).encode(), {"Content-Encoding": "br"}, "Content-Encoding"),
    ("year one with offset", b'{"userId":"u1","event":"e","timestamp":"0001-01-01T00:00:00+05:00"}', {}, "timestamp"),
    ("timestamp not text", b'{"userId":"u1","event":"e","timestamp":12}', {}, "timestamp"),
    ("userId an object", b'{"userId":{"a":1},"event":"e"}', {}, "userId"),
    ("event a number", b'{"userId":"u1","event":7}', {}, "event"),
    ("context not object", b'{"userId":"u1","event":"e","context":[]}', {}, "context"),
    ("bool as text", b'{"userId":true,"event":"e"}', {}, "userId"),
]


@pytest.mark.parametrize(("case", "body", "headers", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_track_is_a_400_with_a_reason(
    db: Engine, http: TestClient, case: str, body: bytes, headers: dict[str, str], reason: str
) -> None:
    answer = http.post("/v1/track", content=body, headers={"Content-Type": "application/json", **headers})
    assert answer.status_code == 400, (case, answer.status_code, answer.text)
    assert reason in answer.json()["message"], answer.json()
    assert "Traceback" not in answer.text
    assert events(db) == []


def test_gzip_bodies_as_libraries_send_them(db: Engine, http: TestClient) -> None:
    body = gzip.compress(json.dumps({"batch": [GOOD | {"type": "track"}]}).encode())
    headers = {"Content-Type": "application/json; charset=utf-8", "Content-Encoding": "gzip"}
    answer = http.post("/v1/batch", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert [e.event_id for e in events(db)] == ["segment:m-1"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"batch": "x"}, "'batch' must be a list"),
        ({}, "'batch' is required"),
        ({"batch": [GOOD], "context": "x"}, "'context' must be an object"),
    ],
)
def test_hostile_batch_envelope(db: Engine, http: TestClient, body: dict[str, object], reason: str) -> None:
    answer = http.post("/v1/batch", json=body)
    assert answer.status_code == 400
    assert reason in answer.json()["message"]
    assert events(db) == []


def test_hostile_messages_in_a_batch_cost_only_themselves(db: Engine, http: TestClient) -> None:
    text = json.dumps(
        {
            "batch": [
                GOOD | {"type": "track"},
                {"type": "track", "userId": "u1", "event": "e", "properties": {"s": "\u0000"}, "messageId": "n"},
                {"type": "identify", "userId": "u1", "traits": {"name": "x" * 500}},
                {"type": "group", "groupId": "acme", "traits": {"seats_purchased": 10**30}},
                {"type": "identify", "userId": "u1", "traits": {"timezone": "Mars/Olympus"}},
            ]
        }
    )
    answer = http.post("/v1/batch", content=text, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert [r["index"] for r in answer.json()["rejected"]] == [1, 2, 3, 4]
    assert [e.event_id for e in events(db)] == ["segment:m-1"]
    [account] = rows(db, models.accounts)
    assert account.seats_purchased == 10


def test_oversized_body_is_refused_before_reading(http: TestClient) -> None:
    answer = http.post("/v1/batch", content=b"{" + b" " * 600_000 + b"}", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert "500 KB" in answer.json()["message"]


def test_a_stored_row_that_is_not_what_the_model_says_costs_nothing(db: Engine, http: TestClient) -> None:
    # Another system wrote the contact's traits: not JSON on SQLite, an array on PostgreSQL.
    bad = "'not json {'" if db.dialect.name == "sqlite" else "'[1, 2]'::jsonb"
    with db.begin() as conn:
        conn.execute(text(f"UPDATE contacts SET traits = {bad} WHERE external_id = 'u1'"))
    assert http.post("/v1/track", json=GOOD).status_code == 200
    answer = http.post("/v1/identify", json={"userId": "u1", "traits": {"nps": 9}})
    assert answer.status_code == 200, answer.text
    [contact] = rows(db, models.contacts)
    assert contact.traits == {"nps": 9}  # the unreadable traits are replaced, not merged
    assert [e.event_id for e in events(db)] == ["segment:m-1"]


def test_a_batch_context_is_checked_like_a_message(db: Engine, http: TestClient) -> None:
    body = {"batch": [GOOD | {"type": "track"}], "context": {"groupId": "ac\u0000me"}}
    answer = http.post("/v1/batch", json=body)
    assert answer.status_code == 400
    assert "context.groupId: contains a NUL character" in answer.json()["message"]
    assert events(db) == []
