"""A contact's timeline in the browser, on SQLite and PostgreSQL: a manager finds why one contact
got one email — the journey, the decisions with their reasons, the send and what the recipient
did — and opens the message exactly as it was sent (from the archive, in a sandboxed frame), even
after the template changed. Roles that do not read the audit are refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from playwright.sync_api import Page
from sqlalchemy import insert

from engine.archive import message_as_sent
from engine.store.models import message_events
from tests.approvals.helpers import reload, template
from tests.console.pages.conftest import PagesEnv, sign_in
from tests.factories import Store
from tests.journeys.helpers import NOW, ledger_rows, run_tick

HOSTILE = "Mina <script>document.title='pwned'</script> Park"


def _sent(env: PagesEnv) -> tuple[int, str]:
    """One email sent to one contact, delivered and opened; its contact id and send key."""
    store = Store(env.engine, NOW)
    acc = store.account(plan="hello", name="Acme & Co")
    contact = store.contact(acc, "admin", name=HOSTILE, email="mina.park@acme.example")
    run_tick(env.engine, env.project, NOW, "t1")
    (row,) = ledger_rows(env.engine, playbook_id="hello")
    assert row.status == "sent"
    with env.engine.begin() as conn:
        conn.execute(
            insert(message_events),
            [
                {"send_key": row.send_key, "event": "delivered", "occurred_at": NOW + timedelta(minutes=1)},
                {"send_key": row.send_key, "event": "open", "occurred_at": NOW + timedelta(hours=2)},
            ],
        )
    return contact, row.send_key


def test_a_manager_follows_a_contact_down_to_the_message_as_sent(
    make_env: Callable[..., PagesEnv], serve: Callable[..., str], page: Page
) -> None:
    env = make_env()
    contact, key = _sent(env)
    with env.engine.connect() as conn:
        kept = message_as_sent(conn, key)
    assert kept is not None
    # The template changes after the send: the page must still show what went out.
    hello = template(env.project, "welcome/hello.en.html")
    hello.write_text(hello.read_text(encoding="utf-8").replace("Welcome aboard.", "Edited later."), "utf-8")
    reload(env.project.settings)

    base = serve(env.app)
    sign_in(page, base, "manager")
    page.click("header nav a[href='/timeline']")
    page.fill("input[name=contact]", "MINA.PARK@acme.example")  # any case
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/timeline?contact=*")
    assert HOSTILE in page.inner_text("ul.people")  # shown as text, never run
    assert page.title() != "pwned"
    whats = [r.get_attribute("data-what") for r in page.locator("tr.entry").all()]
    assert whats[0] == "enrolled" and "sent" in whats
    assert whats.index("sent") < whats.index("delivered") < whats.index("open")
    sent = page.locator("tr.entry[data-what='sent']")
    assert sent.locator("code").inner_text() == "delivered_to_channel"
    assert sent.get_attribute("data-send-key") == key

    sent.locator("a.as-sent").click()
    page.wait_for_url(f"**/messages/{key}")
    assert page.locator("dd.header[data-header='To']").inner_text() == str(kept.message()["To"])
    assert page.locator("dd.header[data-header='Subject']").inner_text() == kept.subject
    frame = page.locator("iframe.as-sent")
    assert frame.get_attribute("sandbox") == ""
    assert frame.get_attribute("srcdoc") == kept.parts()["text/html"]  # byte for byte what went out
    body = page.frame_locator("iframe.as-sent").locator("body").inner_text()
    assert "Welcome aboard." in body and "Edited later." not in body
    assert page.locator("pre.text").text_content() == kept.parts()["text/plain"]
    assert page.title() != "pwned"
    page.click(f"a[href='/timeline?contact={contact}']")  # and back to the person
    assert page.locator("tr.entry[data-what='open']").count() == 1


def test_roles_that_do_not_read_the_audit_are_refused_the_timeline_and_the_message(
    make_env: Callable[..., PagesEnv], serve: Callable[..., str], page: Page
) -> None:
    env = make_env()
    contact, key = _sent(env)
    base = serve(env.app)
    sign_in(page, base, "marketer")
    assert page.locator("header nav a[href='/timeline']").count() == 0
    for path in (f"/timeline?contact={contact}", f"/messages/{key}"):
        response = page.goto(base + path)
        assert response is not None and response.status == 403
        assert "Your role may not open this page" in page.inner_text("main")
        assert "mina.park" not in page.content()


def test_an_unknown_contact_or_message_is_named_not_a_traceback(
    make_env: Callable[..., PagesEnv], serve: Callable[..., str], page: Page
) -> None:
    env = make_env()
    _sent(env)
    base = serve(env.app)
    sign_in(page, base, "admin")
    response = page.goto(f"{base}/timeline?contact=nobody%40nowhere.example")
    assert response is not None and response.status == 404
    assert "no contact 'nobody@nowhere.example'" in page.inner_text("main")
    response = page.goto(f"{base}/messages/{'0' * 64}")
    assert response is not None and response.status == 404
    assert "No message with this send key is in the archive" in page.inner_text("main")
    assert "Traceback" not in page.content()
