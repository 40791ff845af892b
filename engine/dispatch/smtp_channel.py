"""The SMTP channel: smtplib, STARTTLS, credentials from the environment.

Outcomes map like SendGrid's: a refused connection or a 4xx answer before the message was
accepted is retried later; a 5xx rejection fails for good; a connection lost after DATA may have
delivered the message, so it is ambiguous (unknown, reconciled, never resent).
"""

from __future__ import annotations

import smtplib
import ssl

from engine.dispatch.channels import OutgoingEmail, SendError


class SmtpChannel:
    """Sends each message in its own SMTP session (thread-safe, no shared connection state)."""

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        timeout_s: float,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.starttls = starttls
        self._username, self._password = username, password  # never logged
        self._tls = tls_context or ssl.create_default_context()

    def __repr__(self) -> str:
        return f"SmtpChannel(host={self.host!r}, port={self.port}, starttls={self.starttls})"

    def send(self, email: OutgoingEmail) -> str:
        message = email.to_mime()  # HeaderError (that message fails) unless it reads back as intended
        try:
            session = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError("retry", f"cannot connect to {self.host}:{self.port}: {exc}") from None
        try:
            with session:
                session.ehlo()
                if self.starttls:
                    session.starttls(context=self._tls)
                    session.ehlo()
                if self._username:
                    session.login(self._username, self._password or "")
                # The envelope is the checked addresses, never what a parser makes of the headers.
                refused = session.send_message(message, email.sender_email, [email.to_email])
        except smtplib.SMTPRecipientsRefused as exc:
            raise SendError("permanent", f"recipient refused: {_first(exc.recipients)}") from None
        except smtplib.SMTPResponseException as exc:
            kind = "retry" if 400 <= exc.smtp_code < 500 else "permanent"
            text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise SendError(kind, f"SMTP {exc.smtp_code}: {text}") from None
        except (smtplib.SMTPServerDisconnected, TimeoutError, ConnectionError) as exc:
            raise SendError("ambiguous", f"connection lost: {type(exc).__name__}: {exc}") from None
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise SendError("retry", f"{type(exc).__name__}: {exc}") from None
        if refused:
            raise SendError("permanent", f"recipient refused: {_first(refused)}")
        return str(message["Message-ID"])


def _first(refused: dict[str, tuple[int, bytes]]) -> str:
    for address, (code, text) in refused.items():
        return f"{address}: {code} {text.decode('utf-8', 'replace')}"
    return "?"
