"""The keys of one import file: remembered in a bounded buffer, then on disk, and found again
with the line they were first seen on, wherever they are."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from engine.ingest import seen
from engine.ingest.load import Reject, import_files
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


@pytest.mark.parametrize("buffer", [1_000, 3])  # all in memory; mostly on disk
def test_a_digest_collision_never_makes_a_distinct_key_a_duplicate(
    monkeypatch: pytest.MonkeyPatch, buffer: int
) -> None:
    # Every key gets the same digest: only the keys themselves can tell them apart.
    monkeypatch.setattr(seen, "_BUFFER", buffer)
    keys = SeenKeys(digest=lambda key: 42)
    try:
        assert keys.first_lines(["a", "b", "c"], [1, 2, 3]) == [None, None, None]
        assert keys.first_lines(["d", "b", "e", "d"], [4, 5, 6, 7]) == [None, 2, None, 4]
        assert keys.first_lines(["f", "a", "e"], [8, 9, 10]) == [None, 1, 6]
    finally:
        keys.close()


def test_the_import_of_keys_sharing_a_digest_rejects_only_the_true_duplicate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db: Engine
) -> None:
    monkeypatch.setattr(seen, "_BUFFER", 2)
    real = SeenKeys.__init__

    def colliding(self: SeenKeys, digest: object = None) -> None:
        real(self, digest=lambda key: 7)

    monkeypatch.setattr(SeenKeys, "__init__", colliding)
    path = tmp_path / "suppressions.csv"
    rows = [f"p{i}@example.com,bounce" for i in range(6)] + ["p2@example.com,bounce"]
    path.write_text("email,reason\n" + "\n".join(rows) + "\n", encoding="utf-8")
    rejects: list[Reject] = []
    summary = import_files(
        db, "suppressions", [path], on_error="skip", on_reject=rejects.append, now=datetime(2026, 12, 5)
    )
    assert (summary.inserted, summary.rejected) == (6, 1)
    assert [r.format() for r in rejects] == [f"{path}:8: duplicate email 'p2@example.com' (first on line 4)"]
