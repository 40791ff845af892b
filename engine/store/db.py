"""Connections to the store and its migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from engine.problems import did_you_mean

_MIGRATIONS = Path(__file__).parent / "migrations"


# The drivers Touchflow installs and is tested with; anything else fails on import or at run time.
_SUPPORTED = {"sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg"}
_USE = "use sqlite:/// or postgresql://"


class DatabaseURLError(ValueError):
    """A database URL Touchflow cannot use. The message never repeats the URL (it may hold a password)."""


def parse_url(url: str) -> URL:
    """`url` parsed, if it names a database Touchflow supports; else DatabaseURLError saying why."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise DatabaseURLError(
            "not a database URL; use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    if parsed.drivername not in _SUPPORTED:
        hint = did_you_mean(parsed.drivername, sorted(_SUPPORTED))
        raise DatabaseURLError(f"unsupported database URL scheme '{parsed.drivername}'{hint}; {_USE}")
    return parsed


def missing_store(engine: Engine) -> str | None:
    """Why `engine`'s database holds no Touchflow store (no SQLite file, or no tables), or None
    when it does. The SQLite file is looked for before connecting, since connecting creates it."""
    url = engine.url
    where = "the database"
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if not Path(url.database).exists():
            return f"no store at {url.database} (the file does not exist)"
        where = url.database
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return f"{where} has no Touchflow tables"
    return None


def connect(url: str) -> Engine:
    """An Engine for `url`. SQLite gets WAL, a busy timeout and foreign keys off (bulk loads).

    Raises DatabaseURLError for a URL that is not one, or names a database other than SQLite or
    PostgreSQL (before SQLAlchemy tries to import a driver that is not installed)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL lets readers (validate, audit) run while a tick writes.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the driver we install; plain postgresql:// would look for psycopg2.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    """An Alembic Config bound to `engine`, pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the store's schema to the latest revision (creates everything on an empty database)."""
    command.upgrade(alembic_config(engine), "head")
