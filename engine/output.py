"""Output shared by the reports (`touchflow audit`, `touchflow experiments`, `touchflow run`): JSON
lines and CSV, streamed a row at a time, and the `Layout` of a report's rows for people (which
columns name a row, which are numbers, which is a long text), rendered by `engine/cli/layout.py`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


def as_json_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """One JSON object per line."""
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


def as_csv(rows: Iterable[dict[str, Any]], fields: Sequence[str]) -> Iterator[str]:
    """CSV with a header row of `fields`; empty cells for missing values."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


@dataclass(frozen=True)
class Layout:
    """How the rows of one report are laid out.

    `columns` in order; `heading` the columns whose values open a block (ids, the decision);
    `numeric` the columns right-aligned in a table; `detail` a free-text column shown on its own
    line in a block; `labels` a column's name when shown beside its value (default: the name; the
    detail is shown bare unless it has a label here)."""

    columns: Sequence[str]
    heading: Sequence[str]
    numeric: frozenset[str] = frozenset()
    detail: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
