"""The keys met so far in one import file, for "duplicate key (first on line N)", in flat memory.

A Python set of 10M keys takes well over 1 GB. Each key is kept instead as an 8-byte digest
(Python's own string hash, SipHash: keyed per process, computed in C) with its line. The most
recent keys sit in a dict of at most _BUFFER entries; when it is full they move, sorted, into a
private temporary SQLite database on disk whose page cache is capped. Sorted, because a B-tree
larger than its cache takes random inserts one page miss (and one page write) each, while a
sorted batch walks the leaves once in order. Memory therefore stays the same whatever the
file's size; each chunk costs a dict probe per key and one indexed lookup on disk.

Two different keys share a digest with probability about n² / 2⁶⁵ (3 in a million at 10M
keys): such a row would be reported as a duplicate, never written twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

# The temporary database's page cache: 16 MB, however many keys it holds.
_CACHE_KIB = 16 * 1024
# Keys held in memory before they move to disk (~10 MB).
_BUFFER = 100_000


class SeenKeys:
    """Keys with the line they were first seen on, for one file."""

    def __init__(self) -> None:
        self._recent: dict[int, int] = {}
        self._db: sqlite3.Connection | None = None

    def first_lines(self, keys: Sequence[str], lines: Sequence[int]) -> list[int | None]:
        """For each of `keys` (a chunk, in file order, with their `lines`): the line the same key
        was first seen on — earlier in the file or earlier in this chunk —, or None when it is
        new (it is then remembered)."""
        hashes = list(map(hash, keys))
        known = self._on_disk(hashes)
        recent = self._recent
        firsts: list[int | None] = []
        for value, line in zip(hashes, lines, strict=True):
            first = known.get(value) or recent.get(value)
            firsts.append(first)
            if first is None:
                recent[value] = line
        if len(recent) >= _BUFFER:
            self._spill()
        return firsts

    def _on_disk(self, hashes: list[int]) -> dict[int, int]:
        if self._db is None:
            return {}
        found: dict[int, int] = {}
        for start in range(0, len(hashes), 500):
            part = hashes[start : start + 500]
            marks = ",".join("?" * len(part))
            found.update(self._db.execute(f"SELECT h, line FROM seen WHERE h IN ({marks})", part).fetchall())
        return found

    def _spill(self) -> None:
        if self._db is None:
            # "" opens a private database in a temporary file, deleted when closed.
            self._db = sqlite3.connect("", isolation_level=None)
            self._db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            self._db.execute("PRAGMA journal_mode = OFF")
            self._db.execute("PRAGMA synchronous = OFF")
            self._db.execute("CREATE TABLE seen (h INTEGER PRIMARY KEY, line INTEGER NOT NULL)")
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO seen VALUES (?, ?)", sorted(self._recent.items()))
        self._db.execute("COMMIT")
        self._recent.clear()

    def close(self) -> None:
        """Drop the temporary database."""
        if self._db is not None:
            self._db.close()
            self._db = None
