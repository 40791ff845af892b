"""Reading a request body of the ingestion API as a sender may send it — gzip-encoded, any JSON
at all — into a JSON object, or a `BadRequest` saying what is wrong.

JSON that cannot be stored faithfully is not refused here, where it would cost a whole batch:
NaN, infinities and integers beyond 64 bits parse to `Unstorable` markers, and `json_problem`
finds them (and NUL characters, lone surrogates, nesting too deep) in one message at a time."""

from __future__ import annotations

import json
import math
import re
import zlib
from typing import Any

#: Segment's limits: 32 KB per message (and per request to a single-message endpoint), 500 KB
#: per batch request. They apply to the decoded body, so gzip buys no extra room.
MESSAGE_LIMIT = 32 * 1024
BATCH_LIMIT = 500 * 1024
#: Levels of objects and arrays a message may nest (JSON columns are read by path; deeper is abuse).
MAX_DEPTH = 32
_INT64 = 2**63
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadRequest(ValueError):
    """A body that cannot be read; the message is the answer's reason."""


class Unstorable:
    """A JSON number the store cannot keep as written (NaN, an infinity, an integer beyond 64 bits)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text if len(text) <= 24 else text[:21] + "…"

    def __repr__(self) -> str:
        return self.text


def kilobytes(limit: int) -> str:
    """'32 KB' for 32 * 1024."""
    return f"{limit // 1024} KB"


def check_content_type(value: str | None) -> None:
    """Raise BadRequest unless the media type is application/json (parameters allowed)."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise BadRequest(f"Content-Type must be application/json, not '{(value or '(none)')[:60]}'")


def decode(raw: bytes, content_encoding: str | None, limit: int) -> dict[str, Any]:
    """The JSON object in `raw` (gunzipped when `content_encoding` says gzip), at most `limit`
    bytes once decoded; BadRequest otherwise."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        raw = _gunzip(raw, limit)
    elif encoding != "identity":
        raise BadRequest(f"Content-Encoding '{encoding[:30]}' is not supported (send gzip or no encoding)")
    if len(raw) > limit:
        raise BadRequest(f"body is {len(raw)} bytes; at most {kilobytes(limit)}")
    if not raw.strip():
        raise BadRequest("body is empty; expected a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: not UTF-8 at byte {exc.start}") from None
    try:
        parsed = json.loads(text, parse_constant=Unstorable, parse_int=_int, parse_float=_float)
    except RecursionError:
        raise BadRequest(f"body is not valid JSON here: nested too deep (at most {MAX_DEPTH} levels)") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(parsed, dict):
        raise BadRequest(f"body must be a JSON object, not {type_name(parsed)}")
    return parsed


def _gunzip(raw: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)  # gzip header and trailer
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip ({exc})") from None
    if len(out) > limit:
        raise BadRequest(f"body is larger than {kilobytes(limit)} once decompressed")
    if not inflater.eof:
        raise BadRequest("body is not valid gzip (truncated)")
    return out


def _int(text: str) -> int | Unstorable:
    # Checked on the digits, before int(): a 100,000-digit number costs nothing to refuse.
    if len(text.lstrip("-")) > 19:
        return Unstorable(text)
    value = int(text)
    return value if -_INT64 <= value < _INT64 else Unstorable(text)


def _float(text: str) -> float | Unstorable:
    value = float(text)
    return value if math.isfinite(value) else Unstorable(text)


def type_name(value: Any) -> str:
    """The JSON name of `value`'s type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Unstorable):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def json_problem(value: Any, path: str = "", depth: int = 0) -> str | None:
    """What makes `value` unstorable, as 'path: reason', or None: NaN and out-of-range numbers,
    NUL characters and lone surrogates (in keys too), nesting deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        return f"{path or 'message'}: nested too deep (at most {MAX_DEPTH} levels)"
    if isinstance(value, Unstorable):
        return f"{path}: the number {value.text} cannot be stored (NaN, infinite, or beyond 64 bits)"
    if isinstance(value, str):
        return _text_problem(path, value)
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            problem = _text_problem(f"{where[:80]} (the key)", key) or json_problem(item, where[:80], depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problem = json_problem(item, f"{path}[{index}]", depth + 1)
            if problem:
                return problem
    return None


def _text_problem(path: str, text: str) -> str | None:
    if "\x00" in text:
        return f"{path}: contains a NUL character"
    if _SURROGATE.search(text):
        return f"{path}: contains a lone surrogate (not Unicode text)"
    return None
