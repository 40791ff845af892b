"""What an approval covers: a hash of exactly what one email step's arm sends in one locale.

The hash covers the arm's overrides as they travel on the ledger row (template, sender, subject
resolved for the locale the way the renderer resolves it) and the bytes of the template's locale
file and of every template it pulls in (`{% extends %}`, `{% include %}`, `{% import %}`: the
layout), so editing any of them gives another hash and the approval no longer applies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import meta

from engine.compile import CompiledPlaybook
from engine.plan.steps.email import email_payload
from engine.render import EmailRenderer
from engine.render.email import DEFAULT_LOCALE, template_filename
from engine.spec import EmailStep

NO_ARM = ""
"""The arm of a step without an experiment (stored as '', never NULL: it is part of a key)."""


@dataclass(frozen=True)
class Content:
    """One approvable unit: a playbook's email step, an arm, a locale, and its current hash."""

    playbook_id: str
    step_id: str
    arm: str
    locale: str
    template: str
    content_hash: str


class ContentHasher:
    """Hashes what a payload sends per locale; file digests are cached for one dispatch or listing
    (templates do not change under a run)."""

    def __init__(self, renderer: EmailRenderer) -> None:
        self.renderer = renderer
        self._files: dict[str, dict[str, str]] = {}

    def payload_hash(self, payload: Mapping[str, Any], locale: str) -> str:
        """The hash of what a ledger row's `payload` sends in `locale` (a file of its template)."""
        subject = payload.get("subject")
        if isinstance(subject, dict):  # as the renderer picks it: this locale's, else English, else any
            subject = subject.get(locale) or subject.get(DEFAULT_LOCALE) or next(iter(subject.values()), None)
        template = str(payload["template"])
        described = {
            "template": template,
            "locale": locale,
            "from": payload.get("from"),
            "subject": subject,
            "files": self.files(template_filename(template, locale)),
        }
        encoded = json.dumps(described, sort_keys=True, ensure_ascii=True).encode()
        return hashlib.sha256(encoded).hexdigest()

    def files(self, filename: str) -> dict[str, str]:
        """sha256 of `filename` and of every template it references, transitively ('missing'
        for a file that is not there: adding it later changes the hash)."""
        if filename not in self._files:
            found: dict[str, str] = {}
            self._walk(filename, found)
            self._files[filename] = found
        return self._files[filename]

    def _walk(self, filename: str, found: dict[str, str]) -> None:
        if filename in found:
            return
        path = Path(self.renderer.templates_dir) / filename
        try:
            data = path.read_bytes()
        except OSError:
            found[filename] = "missing"
            return
        found[filename] = hashlib.sha256(data).hexdigest()
        try:
            parsed = self.renderer.env.parse(data.decode("utf-8", errors="replace"))
        except Exception:  # a template that does not parse fails at render; its bytes are hashed
            return
        for name in meta.find_referenced_templates(parsed):
            if name is None:  # a computed name: any of the shared files could be the one
                for shared in sorted(Path(self.renderer.templates_dir).glob("_*.html")):
                    self._walk(shared.name, found)
            else:
                self._walk(name, found)


def step_contents(playbook: CompiledPlaybook, hasher: ContentHasher) -> Iterator[Content]:
    """Every (email step, arm, locale) of `playbook` with its current hash; holdout arms send
    nothing and need no approval."""
    for step in playbook.steps:
        if not isinstance(step.spec, EmailStep):
            continue
        action = step.spec.email
        arms = [a for a in action.experiment.arms if not a.holdout] if action.experiment is not None else [None]
        for arm in arms:
            payload = email_payload(action, arm)
            for locale in hasher.renderer.variants(str(payload["template"])):
                yield Content(
                    playbook_id=playbook.id,
                    step_id=step.id,
                    arm=arm.id if arm is not None else NO_ARM,
                    locale=locale,
                    template=str(payload["template"]),
                    content_hash=hasher.payload_hash(payload, locale),
                )
