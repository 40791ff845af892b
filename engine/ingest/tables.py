"""The tables an import reads and writes beside its own: the ids of the rows it references,
looked up once per name, and the way new rows go in (bulk, skipping keys taken meanwhile)."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from sqlalchemy import Column, Connection, MetaData, Table, select, true

from engine.store import models
from engine.store.bulk import bulk_insert, clear_tables, conflict_insert, one_of, skips_conflicts

# New rows staged (PostgreSQL) before they move into their table together: a move costs a
# statement and a scan of the staging table, worth it for large batches only.
_STAGED = 200_000
# Rows sent to the staging table by one COPY (a few MB in memory).
_COPIED = 20_000
# References remembered per column before the memory is emptied (a few MB at most).
_LOOKUPS = 200_000
# Reference column → (table it names, the column of that table holding the id it gives).
REFERENCES: dict[str, tuple[Table, str]] = {
    "csm_external_id": (models.csms, "csm_id"),
    "account_external_id": (models.accounts, "account_id"),
    "contact_external_id": (models.contacts, "contact_id"),
}
# Reference column → the column of the importing row that takes the id.
REFERENCE_IDS = {name: id_column for name, (_, id_column) in REFERENCES.items()}


class Staging:
    """New rows reach their table through the driver's fast path. On SQLite: one executemany per
    chunk of `INSERT … ON CONFLICT DO NOTHING`. On PostgreSQL, through a temporary staging
    table: loaded by COPY chunk after chunk, then moved
    every _STAGED rows (and at the end of each file) with one `INSERT … SELECT … ON CONFLICT DO
    NOTHING` — so a key another writer stored meanwhile is neither doubled nor an error, at a
    fraction of the cost of SQLAlchemy binding every row. The staged rows wait in the database
    (a temporary table spills to disk), not in memory."""

    def __init__(self) -> None:
        self.table: Table | None = None
        self.target: Table | None = None
        self.key = ""
        self.staged = 0
        # Rows waiting for the next COPY: one COPY per _COPIED rows rather than per chunk (each
        # COPY costs round trips and a statement of its own).
        self.pending: list[tuple[Any, ...]] = []

    def insert(self, conn: Connection, target: Table, key: str, rows: list[dict[str, Any]]) -> int:
        """Stage `rows` (dicts with the same keys) for `target`; return how many rows went into
        `target` (those of a move, when this call made one)."""
        names = list(rows[0])
        if skips_conflicts(conn):
            # executemany straight into the table, skipping a key taken meanwhile: no staging,
            # which would only copy every row twice.
            return bulk_insert(conn, target, names, map(itemgetter(*names), rows), skip_conflicts_on=key)
        staging = self.table
        if staging is None or [c.name for c in staging.c] != names:
            moved = self.move(conn)
            self.drop(conn)
            staging = Table(
                f"import_{target.name}",
                MetaData(),
                *(Column(name, target.c[name].type) for name in names),
                prefixes=["TEMPORARY"],
            )
            # A left-over one is possible on SQLite, whose DDL may run outside the transaction.
            staging.drop(conn, checkfirst=True)
            staging.create(conn)
            self.table, self.target, self.key = staging, target, key
        else:
            moved = 0
        self.pending.extend(map(itemgetter(*names), rows))
        if len(self.pending) >= _COPIED:
            self._copy(conn)
        return moved + (self.move(conn) if self.staged + len(self.pending) >= _STAGED else 0)

    def _copy(self, conn: Connection) -> None:
        if self.table is not None and self.pending:
            self.staged += bulk_insert(conn, self.table, [c.name for c in self.table.c], self.pending)
        self.pending = []

    def move(self, conn: Connection) -> int:
        """Move the staged rows into their table, unless their key is taken; return how many went in."""
        self._copy(conn)
        if self.table is None or self.target is None or not self.staged:
            return 0
        names = [c.name for c in self.table.c]
        # WHERE true: SQLite reads `INSERT … SELECT … ON CONFLICT` as a join's ON without it.
        moved = conflict_insert(conn, self.target).from_select(names, select(*self.table.c).where(true()))
        result = conn.execute(moved.on_conflict_do_nothing(index_elements=[self.target.c[self.key]]))
        count = int(result.rowcount) if result.rowcount >= 0 else self.staged
        # TRUNCATE on PostgreSQL: a temporary table is never vacuumed, and dead rows would make
        # every later move scan them.
        clear_tables(conn, [self.table])
        self.staged = 0
        return count

    def drop(self, conn: Connection) -> None:
        """Drop the staging table, if one was made (inside the import's transaction)."""
        if self.table is not None:
            self.table.drop(conn)
            self.table = None


class Lookups:
    """The store ids of the references met so far in this import (a miss kept as None).

    Events name the same accounts and contacts over and over: one query per new name rather
    than per chunk. Sound because an import never writes the tables it references (events
    reference accounts and contacts, contacts accounts, accounts CSMs). Bounded: emptied when
    it grows past _LOOKUPS entries, so memory stays flat."""

    def __init__(self) -> None:
        self.ids: dict[str, dict[str, int | None]] = {name: {} for name in REFERENCES}
        # A contact's account: (its id, its external id).
        self.owners: dict[str, tuple[int, str | None]] = {}

    def fetch(self, conn: Connection, name: str, wanted: list[str]) -> None:
        """Look up the `wanted` references of column `name` not already known."""
        known = self.ids[name]
        if len(known) > _LOOKUPS:
            known.clear()
            if name == "contact_external_id":
                self.owners.clear()
        wanted = [ref for ref in wanted if ref not in known]
        if not wanted:
            return
        table = REFERENCES[name][0]
        if table is models.contacts:
            owner = models.accounts
            query = (
                select(table.c.external_id, table.c.id, table.c.account_id, owner.c.external_id.label("owner"))
                .join(owner, owner.c.id == table.c.account_id)
                .where(one_of(conn, table.c.external_id, wanted))
            )
            for r in conn.execute(query):
                known[r.external_id] = r.id
                self.owners[r.external_id] = (r.account_id, r.owner)
        else:
            query = select(table.c.external_id, table.c.id).where(one_of(conn, table.c.external_id, wanted))
            known.update((r.external_id, r.id) for r in conn.execute(query))
        for ref in wanted:
            known.setdefault(ref, None)
