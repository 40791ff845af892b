"""The keys of one import file: remembered in a bounded buffer, then on disk, and found again
with the line they were first seen on, wherever they are."""

from __future__ import annotations

import pytest

from engine.ingest import seen
from engine.ingest.seen import SeenKeys


def test_duplicates_are_found_in_the_buffer_on_disk_and_within_a_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seen, "_BUFFER", 10)
    keys = SeenKeys()
    try:
        line = 0
        for chunk in range(5):  # 50 keys: four spills to disk
            names = [f"k{chunk * 10 + i}" for i in range(10)]
            lines = list(range(line + 1, line + 11))
            assert keys.first_lines(names, lines) == [None] * 10
            line += 10
        assert keys._db is not None and len(keys._recent) == 0
        again = keys.first_lines(["k3", "new", "k47", "new", "k12"], [51, 52, 53, 54, 55])
        assert again == [4, None, 48, 52, 13]
    finally:
        keys.close()
