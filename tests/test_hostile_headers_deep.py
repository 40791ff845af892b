"""Header values that reach past one level of decoding: encoded words with spaces inside, nested
deeper than any real name, in the address itself, and lone surrogates (JSON can carry them)."""

from __future__ import annotations

import base64
from email.header import decode_header

import pytest

from engine.addresses import email_problem
from engine.dispatch.channels import OutgoingEmail
from engine.dispatch.headers import HeaderError
from engine.render import RenderedEmail
from tests.test_hostile_headers import NOW, outgoing


def _nested(text: str, depth: int) -> str:
    for _ in range(depth):
        text = "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="
    return text


SPACED = "=?utf-8?q?Eve =0D=0ABcc: e@evil.example?="


def test_python_itself_decodes_encoded_words_with_spaces_inside() -> None:
    """Why the check must be as lenient as the decoders: this one yields a CR/LF and a Bcc."""
    assert "\r\nBcc:" in str(decode_header(SPACED)[0][0], "utf-8")


@pytest.mark.parametrize("field", ["to_name", "sender_name", "subject"])
@pytest.mark.parametrize(
    "hostile",
    [SPACED, "=?utf-8?q?Eve\t=0D=0ABcc:_e@evil.example?=", _nested("x\r\nBcc: e@evil.example", 5), _nested("x", 12)],
)
def test_encoded_words_past_one_level_are_refused(field: str, hostile: str) -> None:
    with pytest.raises(HeaderError, match=r"RFC 2047|control character"):
        outgoing("k" * 64, **{field: hostile}).to_mime()


def test_an_encoded_word_in_the_address_is_refused_at_planning_and_when_built() -> None:
    address = "=?utf-8?q?=0D=0ABcc=3A=20evil=40evil.example?=@acme.example"
    assert "RFC 2047" in (email_problem(address) or "")
    rendered = RenderedEmail("Hello", "<p>Hi</p>", "Hi\n", "en", "hello.en.html")
    with pytest.raises(HeaderError, match="RFC 2047"):
        OutgoingEmail("k" * 64, "Team", "team@touchflow.example", "Kim", address, rendered, "pb", "s", NOW).to_mime()


def test_a_lone_surrogate_is_cleaned_from_a_name_and_refused_in_a_subject() -> None:
    message = outgoing("k" * 64, to_name="Kim \ud800 Lee").to_mime()
    assert message["To"].addresses[0].display_name == "Kim Lee"
    with pytest.raises(HeaderError, match="SURROGATE"):
        outgoing("k" * 64, subject="Hello \udfff").to_mime()


def test_real_names_still_pass() -> None:
    for name in ("김민수", "O'Brien, Pat", "Zoë =? not a word", "Team = Acme"):
        assert outgoing("k" * 64, to_name=name).to_mime()["To"].addresses[0].display_name == name
