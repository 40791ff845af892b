"""The `touchflow` command line: a thin face over the engine's programmatic API."""

from engine.cli.main import app

__all__ = ["app"]
