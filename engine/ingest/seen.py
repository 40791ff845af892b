"""The keys met so far in one import file, for "duplicate key (first on line N)", in flat memory.

A Python set of 10M keys takes well over 1 GB. The most recent keys sit in a dict of at most
_BUFFER entries (exact keys: a hit there is a true duplicate); when it is full they move into
a private temporary SQLite database on disk whose page cache is capped, so memory stays the
same whatever the file's size.

On disk each key is indexed by an 8-byte digest (Python's own string hash, SipHash: keyed per
process, computed in C) and stored beside it in full. A digest is only a place to look: a key
is a duplicate when the exact key is found, so two keys that share a digest — about n² / 2⁶⁵
at n keys — are both kept as distinct, and a good row is never rejected. The batch moves
sorted by digest, because a B-tree larger than its cache takes random inserts one page miss
(and one page write) each, while a sorted batch walks the leaves once in order.

Most keys of a file are new, and asking the disk about each would cost more than the rest of
the import. A one-bit-per-digest filter in memory (_FILTER_BITS, 32 MB) answers "certainly not
on disk" for nearly all of them (at 10M keys on disk, about 1 in 27 is looked up in vain).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from operator import itemgetter

# The temporary database's page cache: 16 MB, however many keys it holds.
_CACHE_KIB = 16 * 1024
# Keys held in memory before they move to disk (a few MB).
_BUFFER = 100_000
# Digests asked for in one query (SQLite's limit on bound parameters is well above).
_QUERY = 500
# The filter of the digests on disk: 2²⁸ bits.
_FILTER_BITS = 1 << 28


class SeenKeys:
    """Keys with the line they were first seen on, for one file.

    `digest` (a str → signed 64-bit int function; Python's `hash` by default) only decides where
    a key is filed on disk; equality of the exact keys decides duplicates."""

    def __init__(self, digest: Callable[[str], int] | None = None) -> None:
        self._digest = digest or hash
        self._recent: dict[str, int] = {}
        self._db: sqlite3.Connection | None = None
        self._filter = bytearray()  # allocated at the first spill

    def first_lines(self, keys: Sequence[str], lines: Sequence[int]) -> list[int | None]:
        """For each of `keys` (a chunk, in file order, with their `lines`): the line the same key
        was first seen on — earlier in the file or earlier in this chunk —, or None when it is
        new (it is then remembered)."""
        known = self._on_disk(keys)
        recent = self._recent
        if not known and recent.keys().isdisjoint(keys) and len(set(keys)) == len(keys):
            # The usual chunk: every key new. Said and remembered without a loop in Python.
            recent.update(zip(keys, lines, strict=True))
            if len(recent) >= _BUFFER:
                self._spill()
            return [None] * len(keys)
        firsts: list[int | None] = []
        for key, line in zip(keys, lines, strict=True):
            first = known.get(key) or recent.get(key)
            firsts.append(first)
            if first is None:
                recent[key] = line
        if len(recent) >= _BUFFER:
            self._spill()
        return firsts

    def _on_disk(self, keys: Sequence[str]) -> dict[str, int]:
        """The keys of `keys` stored on disk, with their lines: digests looked up, keys compared."""
        if self._db is None:
            return {}
        mask, bits = _FILTER_BITS - 1, self._filter
        digests = []
        for value in map(self._digest, keys):
            slot = value & mask
            if bits[slot >> 3] >> (slot & 7) & 1:  # perhaps on disk
                digests.append(value)
        if not digests:
            return {}
        digests = sorted(set(digests))
        wanted = set(keys)
        found: dict[str, int] = {}
        for start in range(0, len(digests), _QUERY):
            part = digests[start : start + _QUERY]
            marks = ",".join("?" * len(part))
            for key, line in self._db.execute(f"SELECT key, line FROM seen WHERE h IN ({marks})", part):
                if key in wanted:  # the same digest is not the same key
                    found[key] = line
        return found

    def _spill(self) -> None:
        if self._db is None:
            # "" opens a private database in a temporary file, deleted when closed.
            self._db = sqlite3.connect("", isolation_level=None)
            self._db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            self._db.execute("PRAGMA journal_mode = OFF")
            self._db.execute("PRAGMA synchronous = OFF")
            # Keyed on (digest, key): keys sharing a digest are separate rows, found together.
            self._db.execute(
                "CREATE TABLE seen (h INTEGER NOT NULL, key TEXT NOT NULL, line INTEGER NOT NULL,"
                " PRIMARY KEY (h, key)) WITHOUT ROWID"
            )
            self._filter = bytearray(_FILTER_BITS // 8)
        mask, bits = _FILTER_BITS - 1, self._filter
        digests = list(map(self._digest, self._recent))
        for slot in map(mask.__and__, digests):
            bits[slot >> 3] |= 1 << (slot & 7)
        # Sorted on the digest alone: comparing ints, never the keys' text.
        rows = sorted(zip(digests, self._recent, self._recent.values(), strict=True), key=itemgetter(0))
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO seen VALUES (?, ?, ?)", rows)
        self._db.execute("COMMIT")
        self._recent.clear()

    def close(self) -> None:
        """Drop the temporary database."""
        if self._db is not None:
            self._db.close()
            self._db = None
