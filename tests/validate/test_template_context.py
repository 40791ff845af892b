"""`validate` checks templates against the context they will get, in the same single run:
unknown variables and attributes, unknown filters and tests, a locale the project's audience has
but a template lacks, a subject or title that renders empty — in email templates, arm subjects,
task titles and bodies, and webhook payloads."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, select

from engine.dispatch.context import template_context
from engine.problems import Problem
from engine.store.models import accounts, contacts, csms
from engine.validate import validate_paths
from engine.validate.templates import CONTEXT_SHAPE
from tests.conftest import REPO
from tests.factories import Store, project

EMAIL_PLAYBOOK = """\
id: hello
name: Hello
subject: contact
trigger:
  events: {{name: signed_up, at_least: 1, within: 7d}}
steps:
  - email:
      template: {template}
      from: csm
"""

TASK_PLAYBOOK = """\
id: alert
name: Alert
subject: {subject}
trigger:
  events: {{name: support_ticket_opened, at_least: 5, within: 7d}}
steps:
  - task:
      title: "{title}"
      body: "{body}"
  - webhook:
      url: https://hooks.example/alert
      body: {{text: "{payload}", nested: [{{who: "{payload}"}}]}}
"""

LAYOUT = '{% extends "_layout.html" %}\n'


def _project(tmp_path: Path, playbooks: dict[str, str], templates: dict[str, str]) -> Path:
    root = tmp_path / "proj"
    (root / "playbooks").mkdir(parents=True)
    shutil.copytree(REPO / "templates", root / "templates")
    for name, text in playbooks.items():
        (root / "playbooks" / f"{name}.yaml").write_text(text, encoding="utf-8")
    for name, text in templates.items():
        path = root / "templates" / "email" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def _problems(root: Path) -> list[Problem]:
    return validate_paths([root / "playbooks"], root / "templates" / "email", root).problems


def _at(problems: list[Problem], path: str) -> list[tuple[int, str]]:
    return [(p.line, p.message) for p in problems if p.path == path]


def test_unknown_attributes_and_filters_in_an_email_template_are_found_in_one_run(tmp_path: Path) -> None:
    body = (
        LAYOUT
        + "{% block subject %}Hi {{ account.nmae }}{% endblock %}\n"
        + "{% block content %}\n"
        + "<p>{{ contact.name | upcase }}</p>\n"
        + "<p>{{ contact['emial'] }} {{ csm.nmae }} {{ sender.adress }}</p>\n"
        + "<p>{{ account.traits.anything }} {{ contact.traits['x'] }} {{ account.contract_start.isoformat() }}</p>\n"
        + "<p>{{ account.get('name') }} {% if account.arr is evn %}{% endif %}{{ playbook.nam }}</p>\n"
        + "<p>{{ csm.team }}</p>\n"
        + "{% endblock %}\n"
    )
    root = _project(
        tmp_path,
        {"hello": EMAIL_PLAYBOOK.format(template="hello/x")},
        {"hello/x.en.html": body, "hello/x.ko.html": body.replace("_layout.html", "_layout_ko.html")},
    )

    found = _at(_problems(root), "templates/email/hello/x.en.html")

    assert found == sorted(
        [
            (2, "unknown attribute 'nmae' of account (did you mean 'name'?)"),
            (4, "unknown filter 'upcase' (did you mean 'upper'?)"),
            (5, "unknown attribute 'emial' of contact (did you mean 'email'?)"),
            (5, "unknown attribute 'nmae' of csm (did you mean 'name'?)"),
            (5, "unknown attribute 'adress' of sender; sender has email, name"),
            (7, "unknown test 'evn' (did you mean 'even'?)"),
            (7, "unknown attribute 'nam' of playbook (did you mean 'name'?)"),
            (8, "'team' of csm is there only when the account has a CSM (otherwise: name, email)"),
        ]
    )


def test_a_task_title_body_and_webhook_payload_are_checked_against_their_context(tmp_path: Path) -> None:
    account_playbook = TASK_PLAYBOOK.format(
        subject="account",
        title="Spike at {{ account.nmae }}",
        body="{{ account.name | upcase }}, ask {{ contact.name }}",
        payload="{{ account.nmae }}",
    )
    contact_playbook = TASK_PLAYBOOK.format(
        subject="contact", title="Spike for {{ contact.name }}", body="{{ contact.role }}", payload="{{ step.id }}"
    ).replace("id: alert", "id: alert-contact")
    root = _project(tmp_path, {"alert": account_playbook, "alert-contact": contact_playbook}, {})

    problems = _problems(root)

    assert _at(problems, "playbooks/alert-contact.yaml") == []
    found = _at(problems, "playbooks/alert.yaml")
    assert (8, "unknown attribute 'nmae' of account (did you mean 'name'?)") in found
    assert (9, "unknown filter 'upcase' (did you mean 'upper'?)") in found
    assert any(line == 9 and "no contact" in message for line, message in found), found
    # The webhook's body: both strings, each at its own line.
    assert [line for line, message in found if "'nmae'" in message] == [8, 12, 12]


def test_an_empty_subject_block_and_an_empty_arm_subject_are_problems(tmp_path: Path) -> None:
    empty = LAYOUT + "{% block subject %}  {% endblock %}\n{% block content %}<p>x</p>{% endblock %}\n"
    playbook = EMAIL_PLAYBOOK.format(template="hello/empty") + (
        "      experiment:\n        arms:\n          - id: a\n          - id: b\n            subject: '{{ \"\" }}'\n"
    )
    root = _project(tmp_path, {"hello": playbook}, {"hello/empty.en.html": empty, "hello/empty.ko.html": empty})

    problems = _problems(root)

    assert (2, "the subject renders empty: write text or a variable in {% block subject %}") in _at(
        problems, "templates/email/hello/empty.en.html"
    )
    assert any("subject" in message and "empty" in message for _, message in _at(problems, "playbooks/hello.yaml"))


def test_a_template_missing_a_locale_the_project_speaks_is_named_with_its_fallback(tmp_path: Path) -> None:
    english = LAYOUT + "{% block subject %}Hi {{ contact.name }}{% endblock %}\n{% block content %}x{% endblock %}\n"
    korean_only = english.replace("_layout.html", "_layout_ko.html")
    playbooks = {
        "hello": EMAIL_PLAYBOOK.format(template="hello/english"),
        "other": EMAIL_PLAYBOOK.format(template="hello/korean").replace("id: hello", "id: other"),
    }
    templates = {"hello/english.en.html": english, "hello/korean.ko.html": korean_only}
    root = _project(tmp_path, playbooks, templates)

    problems = _problems(root)

    # Korean contacts fall back to English: maybe a choice, a warning. English ones would fail: an error.
    assert [(p.line, p.message, p.severity) for p in problems if p.path.endswith("english.en.html")] == [
        (1, "no Korean file (hello/english.ko.html): contacts whose locale is 'ko' get the 'en' one", "warning")
    ]
    assert [(p.line, p.message, p.severity) for p in problems if p.path.endswith("korean.ko.html")] == [
        (
            1,
            "no English file (hello/korean.en.html) and no default (hello/korean.html): emails to contacts "
            "whose locale is 'en' will fail",
            "error",
        )
    ]


def test_the_example_project_is_still_valid() -> None:
    report = validate_paths([REPO / "playbooks"], REPO / "templates" / "email", REPO)
    assert report.problems == []


def test_the_shape_is_what_dispatch_builds(db: Engine, db_url: str, tmp_path: Path) -> None:
    """The shape validation checks against is the context dispatch really builds, key for key."""
    store = Store(db, datetime(2026, 11, 23))
    csm = store.csm()
    account = store.account(csm_id=csm)
    contact = store.contact(account)
    proj = project(tmp_path, db_url)
    with db.connect() as conn:
        rows = [
            dict(conn.execute(select(t).where(t.c.id == i)).one()._mapping)
            for t, i in ((accounts, account), (contacts, contact), (csms, csm))
        ]
    playbook = proj.by_id()["anniversary"]
    for sender, with_csm in (("csm", True), ("team", False)):
        built = template_context(
            rows[0],
            rows[1],
            rows[2] if with_csm else None,
            sender_kind=sender,
            playbook=playbook,
            step_id="thanks",
            send_key="k",
        )
        assert set(built) == set(CONTEXT_SHAPE)
        for name, value in built.items():
            shape = CONTEXT_SHAPE[name]
            if shape.fields is None:
                assert isinstance(value, str)
                continue
            # Every attribute validation accepts is there whatever the account (with or without a CSM).
            assert shape.fields <= set(value), (name, shape.fields - set(value))
            if name != "csm":
                assert set(value) == shape.fields, name
