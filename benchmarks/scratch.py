"""A benchmark's own store: a migrated, empty SQLite file, or a new schema of a PostgreSQL
database that is dropped afterwards — never the project's store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from engine.store.db import connect, migrate


@contextmanager
def scratch_store(url: str | None, directory: Path, label: str) -> Iterator[Engine]:
    """A migrated, empty store: a SQLite file in `directory` (`url` None), or a new schema of the
    PostgreSQL database `url` (the engine's URL names it, so other processes can connect too)."""
    if url is None:
        engine = connect(f"sqlite:///{directory / f'{label}.db'}")
        migrate(engine)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    schema = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = connect(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = connect(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
