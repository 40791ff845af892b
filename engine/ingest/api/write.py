"""Writing the messages of one request in one transaction: accounts (group), contacts (identify
and group membership), events (track), and their arrivals in `data_sources`.

Every message is first applied to an in-memory picture of the rows it touches — read once, with
row locks on PostgreSQL — so a message that cannot be stored (a new contact with no account, an
event whose user and group are both unknown) is rejected before anything is written, and costs
only itself. Then each touched account and contact is written once and the events are inserted
in one statement with ON CONFLICT (event_id) DO NOTHING: a retried messageId is never doubled.
Rows are locked and written in key order (accounts, contacts, events, sources), so concurrent
requests never wait on each other in a cycle."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, select, update

from engine.ingest.api.messages import Group, Identify, Message, Track
from engine.ingest.contract import CONTRACT, Kind
from engine.store import models
from engine.store.bulk import conflict_insert
from engine.store.freshness import Arrival, event_source, record_arrivals
from engine.store.readable import read_rows


@dataclass(frozen=True)
class Rejected:
    """A message not stored: its place in the request, its messageId, and why."""

    index: int
    message_id: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON form in a batch answer."""
        return {"index": self.index, "messageId": self.message_id, "reason": self.reason}


@dataclass
class _Row:
    """An account or contact as the request leaves it (id None: new, inserted at the end)."""

    key: str
    id: int | None
    columns: dict[str, Any]
    traits: dict[str, Any]
    stored_traits: dict[str, Any] = field(default_factory=dict)
    account_key: str | None = None  # contacts: the account's external id, when set here
    account_id: int | None = None  # contacts: the stored account, when not moved
    touched: bool = False


def apply_messages(conn: Connection, messages: Sequence[Message], key_id: int, now: datetime) -> list[Rejected]:
    """Store `messages` (written by write key `key_id`, received at `now`, naive UTC) inside the
    caller's transaction; return the ones rejected, in request order."""
    rejected: list[Rejected] = []
    groups = sorted((m for m in messages if isinstance(m, Group)), key=lambda m: m.group_id)
    identifies = sorted((m for m in messages if isinstance(m, Identify)), key=lambda m: m.user_id)
    tracks = [m for m in messages if isinstance(m, Track)]
    account_keys = {g.group_id for g in groups} | {i.group_id for i in identifies if i.group_id}
    account_keys |= {t.group_id for t in tracks if t.group_id}
    changed_users = {g.user_id for g in groups if g.user_id} | {i.user_id for i in identifies}
    user_keys = changed_users | {t.user_id for t in tracks if t.user_id}
    accounts = _load(conn, models.accounts, account_keys, lock={g.group_id for g in groups})
    contacts = _load(conn, models.contacts, user_keys, lock=changed_users)
    csms = _csm_ids(conn, {g.columns["csm_external_id"] for g in groups if "csm_external_id" in g.columns})
    identified = {m.user_id for m in identifies}
    kept: list[Group] = []
    for group in groups:
        reason = _apply_group(group, accounts, contacts, identified, csms)
        if reason:
            rejected.append(Rejected(group.index, group.message_id, f"group: {reason}"))
        elif group.user_id:
            kept.append(group)
    # userId → groupId: the last group call of the request wins, as later calls do in Segment.
    members = {g.user_id: g.group_id for g in sorted(kept, key=lambda g: g.index) if g.user_id}
    for identify in identifies:
        reason = _apply_identify(identify, accounts, contacts, members)
        if reason:
            rejected.append(Rejected(identify.index, identify.message_id, f"identify: {reason}"))
    for user_id, group_id in members.items():  # membership: after identify created the contact
        contact = contacts.get(user_id)
        if contact is not None:
            contact.account_key, contact.account_id, contact.touched = group_id, None, True

    arrivals: dict[str, Arrival] = {}
    written = _write(conn, models.accounts, CONTRACT["accounts"], accounts, {})
    account_ids = {row.key: row.id for row in accounts.values() if row.id is not None} | written
    if any(row.touched for row in accounts.values()):
        arrivals["accounts"] = Arrival(sum(1 for r in accounts.values() if r.touched), now)
    _write(conn, models.contacts, CONTRACT["contacts"], contacts, account_ids)
    if any(row.touched for row in contacts.values()):
        arrivals["contacts"] = Arrival(sum(1 for r in contacts.values() if r.touched), now)

    rows = []
    for track in tracks:
        reason, row = _event_row(track, accounts, contacts, account_ids, key_id)
        if reason:
            rejected.append(Rejected(track.index, track.message_id, f"track: {reason}"))
        elif row is not None:
            rows.append(row)
    arrivals |= _insert_events(conn, rows)
    record_arrivals(conn, arrivals, now)
    return sorted(rejected, key=lambda r: r.index)


def _load(conn: Connection, table: Table, keys: Iterable[str], lock: set[str]) -> dict[str, _Row]:
    """The stored rows of `keys`; those in `lock` locked for update on PostgreSQL, in key order.

    Read through `read_rows`: a row another system wrote badly (traits that are not JSON, or not
    an object) reads with empty stored traits instead of failing the request."""
    found: dict[str, _Row] = {}
    wanted = sorted(keys)
    columns = [table.c.id, table.c.external_id, table.c.traits]
    if "account_id" in table.c:
        columns.append(table.c.account_id)
    for part, locked in ((sorted(set(wanted) & lock), True), (sorted(set(wanted) - lock), False)):
        if not part:
            continue
        query = select(*columns).where(table.c.external_id.in_(part)).order_by(table.c.external_id)
        if locked:  # a row lock on PostgreSQL; SQLite's one writer needs none (and renders none)
            query = query.with_for_update()
        for r in read_rows(conn, query, table).rows:
            if r.external_id is None:  # unreadable: it cannot be the key asked for
                continue
            traits = r.traits if isinstance(r.traits, dict) else {}
            account_id = r.account_id if "account_id" in table.c else None
            found[r.external_id] = _Row(r.external_id, r.id, {}, {}, dict(traits), account_id=account_id)
    return found


def _csm_ids(conn: Connection, keys: set[str]) -> dict[str, int]:
    if not keys:
        return {}
    query = select(models.csms.c.external_id, models.csms.c.id).where(models.csms.c.external_id.in_(sorted(keys)))
    return {r.external_id: r.id for r in conn.execute(query)}


def _apply_group(
    group: Group, accounts: dict[str, _Row], contacts: dict[str, _Row], identified: set[str], csms: dict[str, int]
) -> str | None:
    """Apply `group` to the picture, or say why it cannot be."""
    if group.user_id and group.user_id not in contacts and group.user_id not in identified:
        return f"userId '{group.user_id}' names no contact (identify it first, or in the same batch)"
    columns = dict(group.columns)
    csm = columns.pop("csm_external_id", None)
    if csm is not None:
        if csm not in csms:
            return f"traits.csm_external_id '{csm}': no such csm in the store"
        columns["csm_id"] = csms[csm]
    row = accounts.get(group.group_id)
    if row is None:
        missing = _missing(CONTRACT["accounts"], columns, {"external_id", "csm_external_id"})
        if missing:
            return f"new account '{group.group_id}' needs traits {', '.join(missing)} (or import it first)"
        row = accounts[group.group_id] = _Row(group.group_id, None, {"status": "active"}, {})
    row.columns |= columns
    row.traits |= group.traits
    row.touched = True
    return None


def _apply_identify(
    identify: Identify, accounts: dict[str, _Row], contacts: dict[str, _Row], members: dict[str, str]
) -> str | None:
    """Apply `identify` to the picture, or say why it cannot be."""
    group_id = identify.group_id or members.get(identify.user_id)
    if group_id is not None and group_id not in accounts:
        return f"groupId '{group_id}' names no account (send its group call first, or import it)"
    row = contacts.get(identify.user_id)
    if row is None:
        if group_id is None:
            return (
                f"no account for new contact '{identify.user_id}': give context.groupId, "
                "or send a group call with this userId"
            )
        columns = {"role": "user"} | identify.columns
        missing = _missing(CONTRACT["contacts"], columns, {"external_id", "account_external_id"})
        if missing:
            return f"new contact '{identify.user_id}' needs traits {', '.join(missing)}"
        row = contacts[identify.user_id] = _Row(identify.user_id, None, {}, {})
    else:
        columns = identify.columns
    row.columns |= columns
    row.traits |= identify.traits
    if group_id is not None:
        row.account_key, row.account_id = group_id, None
    row.touched = True
    return None


def _missing(kind: Kind, columns: dict[str, Any], keys: set[str]) -> list[str]:
    return [c.name for c in kind.columns if c.required and c.name not in keys and c.name not in columns]


def _write(
    conn: Connection, table: Table, kind: Kind, rows: dict[str, _Row], account_ids: dict[str, int]
) -> dict[str, int]:
    """Insert the new rows and update the touched ones, in key order; the new rows' ids."""
    created: dict[str, int] = {}
    for key in sorted(rows):
        row = rows[key]
        if not row.touched:
            continue
        values = dict(row.columns)
        if table is models.contacts and row.account_key is not None:
            values["account_id"] = account_ids[row.account_key]
        if row.id is None:
            insert = conflict_insert(conn, table).values(external_id=key, traits=row.traits, **values)
            new_id = conn.execute(
                insert.on_conflict_do_nothing(index_elements=[table.c.external_id]).returning(table.c.id)
            ).scalar_one_or_none()
            if new_id is not None:
                row.id = created[key] = int(new_id)
                continue
            # Another request created it meanwhile: merge into that row instead.
            query = select(table.c.id, table.c.traits).where(table.c.external_id == key).with_for_update()
            [stored] = read_rows(conn, query, table).rows
            row.id = int(stored.id)
            row.stored_traits = dict(stored.traits) if isinstance(stored.traits, dict) else {}
            created[key] = row.id
        conn.execute(update(table).where(table.c.id == row.id).values(traits=row.stored_traits | row.traits, **values))
    return created


def _event_row(
    track: Track,
    accounts: dict[str, _Row],
    contacts: dict[str, _Row],
    account_ids: dict[str, int],
    key_id: int,
) -> tuple[str | None, dict[str, Any] | None]:
    """The events row of `track` (account: context.groupId, else the contact's), or why not."""
    contact = contacts.get(track.user_id) if track.user_id else None
    if track.group_id is not None:
        if track.group_id not in account_ids:
            return f"context.groupId '{track.group_id}' names no account", None
        account_id: int | None = account_ids[track.group_id]
    elif contact is not None:
        account_id = account_ids[contact.account_key] if contact.account_key else contact.account_id
    elif track.user_id:
        return f"userId '{track.user_id}' names no contact and no context.groupId names an account", None
    else:
        return "an anonymous event needs context.groupId to name its account", None
    row = {
        "account_id": account_id,
        "contact_id": contact.id if contact is not None else None,
        "name": track.event,
        "occurred_at": track.occurred_at,
        "properties": track.properties,
        "event_id": track.event_id,
        "write_key_id": key_id,
    }
    return None, row


def _insert_events(conn: Connection, rows: list[dict[str, Any]]) -> dict[str, Arrival]:
    """Insert `rows` (a repeated event_id: once); the arrivals per event name of those inserted."""
    if not rows:
        return {}
    unique = {row["event_id"]: row for row in rows}  # a batch may repeat a messageId itself
    table = models.events
    statement = (
        conflict_insert(conn, table)
        .on_conflict_do_nothing(index_elements=[table.c.event_id])
        .returning(table.c.name, table.c.occurred_at)
    )
    inserted = conn.execute(statement, [unique[k] for k in sorted(unique)]).all()
    counts: dict[str, int] = defaultdict(int)
    latest: dict[str, datetime] = {}
    for name, occurred_at in inserted:
        counts[name] += 1
        latest[name] = max(latest.get(name, occurred_at), occurred_at)
    return {event_source(name): Arrival(counts[name], latest[name]) for name in counts}
