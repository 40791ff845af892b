"""Typed traits: the project declares the type of a trait key, in `touchflow.yaml`.

```yaml
traits:
  account: {trial_ends_on: date, mrr: number, beta: boolean, segment_code: text}
  contact: {nps_score: number}
```

A declared trait is read as a column of that type: `traits.trial_ends_on` is a date field in
conditions, relative dates and date triggers. A stored value that is not of the declared type
(not a `YYYY-MM-DD` string for a date, not a JSON number for a number, …) reads as NULL, so the
condition is simply not true for that row. Undeclared traits are JSON values compared with
whatever they are compared with.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from engine.spec.base import SpecModel

TraitType = Literal["date", "number", "boolean", "text"]

# Letters, digits and `_ . -`: a declared key is always a plain JSON path label on both databases
# (engine/compile/json_keys.py), and the name written after `traits.` in a playbook.
TraitKey = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")]


class TraitTypes(SpecModel):
    """Declared trait types of accounts and contacts: `{account: {trial_ends_on: date}}`."""

    account: dict[TraitKey, TraitType] = Field(default_factory=dict)
    """Account trait keys and their types: date (`YYYY-MM-DD`), number, boolean or text."""
    contact: dict[TraitKey, TraitType] = Field(default_factory=dict)
    """Contact trait keys and their types: date (`YYYY-MM-DD`), number, boolean or text."""

    def declared(self, table: Literal["account", "contact"], key: str) -> TraitType | None:
        """The declared type of `key` of the account's or contact's traits, or None."""
        return (self.account if table == "account" else self.contact).get(key)


NO_TRAITS = TraitTypes()
"""No declarations: every trait is an untyped JSON value."""
