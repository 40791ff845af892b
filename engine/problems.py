"""Problems found in a user's files, pointing at file, line and column."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, order=True)
class Problem:
    """One error (or warning) in a user's file. `line` and `col` are 1-based."""

    path: str
    line: int
    col: int
    message: str
    severity: Literal["error", "warning"] = "error"
    """A warning points at something that may be right (an event name the store has not seen
    yet): it is printed, but never fails `validate`."""

    def format(self) -> str:
        """The compiler-style line `path:line:col: error: message` (or `warning:`)."""
        return f"{self.path}:{self.line}:{self.col}: {self.severity}: {self.message}"


class ProblemsFound(Exception):
    """Raised when a file cannot be used; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(p.format() for p in problems))
        self.problems = problems


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest candidate, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
