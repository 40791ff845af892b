"""The field catalogue: which fields playbooks may reference, and their kinds.

Derived from the SQLAlchemy models, so `validate` catches what `run` would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import JSON, Boolean, Column, Date, DateTime, Float, Integer, Numeric, Table

from engine.spec.traits import NO_TRAITS, TraitType, TraitTypes
from engine.store.models import accounts, contacts

FieldKind = Literal["string", "number", "date", "datetime", "boolean", "json"]


@dataclass(frozen=True)
class FieldInfo:
    """A field a condition can test: its table, column and kind."""

    table: Literal["account", "contact"]
    name: str
    kind: FieldKind
    key: str | None = None
    """For `traits.KEY`: the key inside the JSON column `name`."""
    nullable: bool = True
    """Whether the field may be emptied (`update: {clear: [...]}`)."""

    @property
    def label(self) -> str:
        """The field as a playbook names it (without the account./contact. prefix)."""
        return f"traits.{self.key}" if self.key else self.name

    @property
    def declared(self) -> bool:
        """A trait whose type the project declares (read as that type, not as a JSON value)."""
        return self.key is not None and self.kind != "json"


def _kind(column: Column[object]) -> FieldKind:
    t = column.type
    if isinstance(t, DateTime):
        return "datetime"
    if isinstance(t, Date):
        return "date"
    if isinstance(t, Boolean):
        return "boolean"
    if isinstance(t, Integer | Float | Numeric):
        return "number"
    if isinstance(t, JSON):
        return "json"
    return "string"


def _fields(table: Table, owner: Literal["account", "contact"]) -> dict[str, FieldInfo]:
    return {c.name: FieldInfo(owner, c.name, _kind(c), nullable=bool(c.nullable)) for c in table.columns}


ACCOUNT_FIELDS = _fields(accounts, "account")
CONTACT_FIELDS = _fields(contacts, "contact")


_TRAIT_KINDS: dict[TraitType, FieldKind] = {"date": "date", "number": "number", "boolean": "boolean", "text": "string"}


def resolve_field(
    name: str, subject: Literal["account", "contact"], traits: TraitTypes = NO_TRAITS
) -> FieldInfo | None:
    """The field `name` refers to for this subject, or None.

    `account.x` and `contact.x` are explicit. A bare name is the subject's own field; for
    contact subjects it falls back to the account's field. `traits.KEY` (with either prefix)
    reads KEY of the JSON traits column: of the type `traits` declares for it, else a JSON value.
    """
    table: Literal["account", "contact"] = subject
    if name.startswith("account."):
        table, name = "account", name.removeprefix("account.")
    elif name.startswith("contact."):
        if subject != "contact":
            return None
        name = name.removeprefix("contact.")
    elif subject == "contact" and name not in CONTACT_FIELDS and not name.startswith("traits."):
        table = "account"
    if name.startswith("traits.") and len(name) > len("traits."):
        key = name.removeprefix("traits.")
        declared = traits.declared(table, key)
        return FieldInfo(table, "traits", _TRAIT_KINDS[declared] if declared else "json", key=key)
    return (ACCOUNT_FIELDS if table == "account" else CONTACT_FIELDS).get(name)


def known_field_names(subject: Literal["account", "contact"]) -> list[str]:
    """Every name `resolve_field` accepts for this subject (for "did you mean")."""
    names = list(ACCOUNT_FIELDS) + [f"account.{n}" for n in ACCOUNT_FIELDS]
    if subject == "contact":
        names += list(CONTACT_FIELDS) + [f"contact.{n}" for n in CONTACT_FIELDS]
    return names
