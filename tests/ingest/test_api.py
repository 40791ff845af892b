"""The Segment-compatible ingestion API of `touchflow serve`: identify, group, track and batch,
authenticated by write key, idempotent on messageId, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select, update
from starlette.testclient import TestClient

from engine.ingest.api.keys import revoke_key
from engine.store import models
from tests.ingest.api_helpers import NOW, basic, client, events, new_key, rows, seeded

TRACK = {
    "userId": "u1",
    "event": "Report Exported",
    "properties": {"format": "csv", "rows": 1200},
    "timestamp": "2026-12-04T08:30:00.123+01:00",
    "messageId": "m-1",
}


@pytest.fixture
def api(db: Engine) -> Iterator[tuple[Engine, TestClient, tuple[int, int]]]:
    ids = seeded(db)
    yield from ((db, http, ids) for http in client(db, new_key(db)))


def test_track_stores_one_event_with_its_key_and_freshness(api: tuple[Engine, TestClient, tuple[int, int]]) -> None:
    db, http, (account, contact) = api
    answer = http.post("/v1/track", json=TRACK)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True}
    [event] = events(db)
    [key] = rows(db, models.write_keys)
    assert (event.account_id, event.contact_id, event.name) == (account, contact, "Report Exported")
    assert event.occurred_at == datetime(2026, 12, 4, 7, 30, 0, 123000)  # naive UTC
    assert event.properties == {"format": "csv", "rows": 1200}
    assert event.event_id == "segment:m-1"
    assert event.write_key_id == key.id
    [source] = rows(db, models.data_sources)
    assert (source.source, source.last_data_at, source.arrivals) == ("event:Report Exported", event.occurred_at, 1)
    # A client retry (same messageId) never doubles the event.
    assert http.post("/v1/track", json=TRACK).status_code == 200
    assert http.post("/v1/batch", json={"batch": [TRACK | {"type": "track"}]}).status_code == 200
    assert len(events(db)) == 1


def test_short_aliases_and_default_timestamp(api: tuple[Engine, TestClient, tuple[int, int]]) -> None:
    db, http, _ = api
    message = {k: v for k, v in TRACK.items() if k != "timestamp"}
    assert http.post("/v1/t", json=message).status_code == 200
    assert http.post("/v1/b", json={"batch": [message | {"type": "track", "messageId": "m-2"}]}).status_code == 200
    assert [(e.event_id, e.occurred_at) for e in events(db)] == [("segment:m-1", NOW), ("segment:m-2", NOW)]


def test_without_message_id_a_retry_is_still_one_event(api: tuple[Engine, TestClient, tuple[int, int]]) -> None:
    db, http, _ = api
    message = {k: v for k, v in TRACK.items() if k != "messageId"}
    assert http.post("/v1/track", json=message).status_code == 200
    assert http.post("/v1/track", json=message).status_code == 200
    [event] = events(db)
    assert event.event_id.startswith("segment:sha256:")


def test_authentication(db: Engine) -> None:
    seeded(db)
    key = new_key(db)
    for http in client(db, None):
        assert http.post("/v1/track", json=TRACK).status_code == 401
        assert http.post("/v1/track", json=TRACK, headers=basic("tfk_not-a-key")).status_code == 401
        assert http.post("/v1/track", json=TRACK, headers={"Authorization": "Bearer " + key}).status_code == 401
        answer = http.post("/v1/track", json=TRACK, headers={"Authorization": "Basic !!!"})
        assert answer.status_code == 401
        assert "WWW-Authenticate" in answer.headers
        assert http.post("/v1/track", json=TRACK, headers=basic(key)).status_code == 200
        with db.begin() as conn:
            assert revoke_key(conn, "web", NOW)
        revoked = http.post("/v1/track", json=TRACK | {"messageId": "m-2"}, headers=basic(key))
        assert revoked.status_code == 401
        assert "revoked" not in revoked.text  # a revoked key is told nothing more than a wrong one
    with db.connect() as conn:
        [stored] = conn.execute(select(models.write_keys)).all()
    assert key not in (stored.key_hash, stored.key_prefix) and len(stored.key_hash) == 64
    assert len(events(db)) == 1


@pytest.mark.parametrize(
    ("path", "message", "reason"),
    [
        ("/v1/track", {"userId": "u1"}, "track: 'event' is required"),
        ("/v1/track", {"event": "x"}, "track: 'userId' or 'anonymousId' is required"),
        ("/v1/track", TRACK | {"event": "x" * 65}, "track: 'event'"),
        ("/v1/track", TRACK | {"properties": [1]}, "track: 'properties' must be an object"),
        ("/v1/track", TRACK | {"timestamp": "2015-2-02T00:30:08Z"}, "track: 'timestamp'"),
        ("/v1/track", TRACK | {"messageId": "m" * 201}, "track: 'messageId'"),
        ("/v1/track", TRACK | {"userId": "nobody"}, "track: userId 'nobody' names no contact"),
        ("/v1/track", TRACK | {"context": {"groupId": "nope"}}, "track: context.groupId 'nope' names no account"),
        ("/v1/identify", {"userId": "u9", "traits": {"email": "x@y.example"}}, "identify: no account for new contact"),
        ("/v1/identify", {"userId": "u1", "traits": {"email": "not-an-address"}}, "identify: traits.email"),
        ("/v1/identify", {"userId": "u1", "traits": {"role": "boss"}}, "identify: traits.role: 'boss' is not one of"),
        ("/v1/identify", {"anonymousId": "a1"}, "identify: 'userId' is required"),
        ("/v1/group", {"groupId": "acme", "traits": {"arr": "lots"}}, "group: traits.arr: 'lots' is not a number"),
        ("/v1/group", {"groupId": "new-co", "traits": {"name": "New"}}, "group: new account 'new-co' needs traits"),
        ("/v1/group", {"userId": "u1"}, "group: 'groupId' is required"),
    ],
)
def test_a_bad_message_is_a_400_naming_the_field(
    api: tuple[Engine, TestClient, tuple[int, int]], path: str, message: dict[str, object], reason: str
) -> None:
    db, http, _ = api
    before = [tuple(r) for r in rows(db, models.contacts)] + [tuple(r) for r in rows(db, models.accounts)]
    answer = http.post(path, json=message)
    assert answer.status_code == 400, answer.text
    assert answer.json()["success"] is False
    assert reason in answer.json()["message"]
    assert events(db) == []
    assert [tuple(r) for r in rows(db, models.contacts)] + [tuple(r) for r in rows(db, models.accounts)] == before


def test_identify_creates_then_updates_a_contact(api: tuple[Engine, TestClient, tuple[int, int]]) -> None:
    db, http, (account, _) = api
    first = {
        "userId": "u2",
        "traits": {"email": "Peter@Initech.example", "firstName": "Peter", "lastName": "Gibbons", "plan_seen": 3},
        "context": {"groupId": "acme", "timezone": "Europe/Paris", "locale": "fr-FR"},
    }
    assert http.post("/v1/identify", json=first).status_code == 200
    [contact] = [c for c in rows(db, models.contacts) if c.external_id == "u2"]
    assert (contact.account_id, contact.email, contact.name, contact.role) == (
        account,
        "Peter@Initech.example",
        "Peter Gibbons",
        "user",
    )
    # firstName / lastName make the name and stay traits, as Segment's reserved traits.
    traits = {"firstName": "Peter", "lastName": "Gibbons", "plan_seen": 3}
    assert (contact.timezone, contact.locale, contact.traits) == ("Europe/Paris", "fr-FR", traits)
    later = {"userId": "u2", "traits": {"role": "champion", "nps": 9}}
    assert http.post("/v1/identify", json=later).status_code == 200
    [contact] = [c for c in rows(db, models.contacts) if c.external_id == "u2"]
    assert (contact.email, contact.role, contact.traits) == ("Peter@Initech.example", "champion", traits | {"nps": 9})
    sources = {s.source: s.arrivals for s in rows(db, models.data_sources)}
    assert sources == {"contacts": 2}


def test_group_updates_the_account_creates_one_and_moves_a_contact(
    api: tuple[Engine, TestClient, tuple[int, int]],
) -> None:
    db, http, (_, contact) = api
    assert (
        http.post("/v1/group", json={"groupId": "acme", "traits": {"plan": "pro", "employees": 420}}).status_code == 200
    )
    new = {
        "userId": "u1",
        "groupId": "initech",
        "traits": {
            "name": "Initech",
            "tier": "low_touch",
            "plan": "team",
            "arr": 4800,
            "seats_purchased": 12,
            "lifecycle_stage": "onboarding",
            "contract_start": "2026-01-01",
            "renewal_date": "2027-01-01",
            "timezone": "America/Chicago",
            "locale": "en",
            "industry": "Technology",
        },
    }
    assert http.post("/v1/group", json=new).status_code == 200
    accounts = {a.external_id: a for a in rows(db, models.accounts)}
    assert (accounts["acme"].plan, accounts["acme"].traits) == ("pro", {"employees": 420})
    assert (accounts["initech"].tier, accounts["initech"].arr, accounts["initech"].traits) == (
        "low_touch",
        4800.0,
        {"industry": "Technology"},
    )
    [moved] = [c for c in rows(db, models.contacts) if c.id == contact]
    assert moved.account_id == accounts["initech"].id
    # Later events of the contact follow it to its new account.
    assert http.post("/v1/track", json=TRACK).status_code == 200
    assert [e.account_id for e in events(db)] == [accounts["initech"].id]


def test_batch_keeps_the_good_messages_and_reports_the_bad(api: tuple[Engine, TestClient, tuple[int, int]]) -> None:
    db, http, (account, _) = api
    batch = [
        {"type": "track", "userId": "u3", "event": "Signed In", "messageId": "b-0"},  # identified below
        {"type": "identify", "userId": "u3", "traits": {"email": "u3@acme.example", "name": "U3"},
         "context": {"groupId": "acme"}},
        {"type": "track", "userId": "u1", "messageId": "b-2"},  # no event
        {"type": "page", "userId": "u1", "name": "Home"},  # not stored, not an error
        {"type": "track", "anonymousId": "anon", "event": "Visited", "context": {"groupId": "acme"},
         "messageId": "b-4"},
        {"type": "bogus", "userId": "u1"},
        "not an object",
        {"type": "track", "userId": "u1", "event": "Big", "properties": {"blob": "x" * 33_000}, "messageId": "b-7"},
    ]  # fmt: skip
    answer = http.post("/v1/batch", json={"batch": batch, "context": {"library": {"name": "test"}}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True
    assert [r["index"] for r in body["rejected"]] == [2, 5, 6, 7]
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert reasons[2] == "track: 'event' is required"
    assert "'type'" in reasons[5] and "bogus" in reasons[5]
    assert "must be an object" in reasons[6]
    assert "32 KB" in reasons[7]
    assert body["rejected"][0]["messageId"] == "b-2"
    stored = {e.event_id: e for e in events(db)}
    assert set(stored) == {"segment:b-0", "segment:b-4"}
    assert stored["segment:b-4"].contact_id is None and stored["segment:b-4"].account_id == account
    assert stored["segment:b-0"].contact_id is not None


def test_track_account_rules(api: tuple[Engine, TestClient, tuple[int, int]]) -> None:
    db, http, (account, contact) = api
    other = seeded_other(db)
    # context.groupId names the account explicitly; the contact is kept.
    assert http.post("/v1/track", json=TRACK | {"context": {"groupId": "globex"}}).status_code == 200
    # An unknown user with a known group is an account-level event.
    unknown = TRACK | {"userId": "later", "messageId": "m-2", "context": {"groupId": "acme"}}
    assert http.post("/v1/track", json=unknown).status_code == 200
    assert [(e.account_id, e.contact_id) for e in events(db)] == [(other, contact), (account, None)]


def seeded_other(db: Engine) -> int:
    from tests.factories import Store

    return Store(db, NOW).account(external_id="globex", name="Globex")


def test_size_limits(api: tuple[Engine, TestClient, tuple[int, int]]) -> None:
    db, http, _ = api
    big = TRACK | {"properties": {"blob": "x" * 33_000}}
    answer = http.post("/v1/track", json=big)
    assert answer.status_code == 400
    assert "32 KB" in answer.json()["message"]
    batch = [TRACK | {"type": "track", "messageId": f"m-{i}", "properties": {"blob": "x" * 20_000}} for i in range(30)]
    answer = http.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 400
    assert "500 KB" in answer.json()["message"]
    assert events(db) == []


def test_arrivals_only_move_forward(api: tuple[Engine, TestClient, tuple[int, int]]) -> None:
    db, http, _ = api
    with db.begin() as conn:
        conn.execute(update(models.write_keys).values(created_at=NOW - timedelta(days=1)))
    batch = [
        TRACK | {"type": "track", "messageId": "new", "timestamp": "2026-12-05T08:00:00Z"},
        TRACK | {"type": "track", "messageId": "old", "timestamp": "2026-11-01T08:00:00Z"},
    ]
    assert http.post("/v1/batch", json={"batch": batch}).status_code == 200
    [source] = rows(db, models.data_sources)
    assert (source.last_data_at, source.last_arrived_at, source.arrivals) == (datetime(2026, 12, 5, 8), NOW, 2)
